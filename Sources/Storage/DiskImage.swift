/// A virtual disk backed by an image file: the interface the virtio-blk device uses.
///
/// Offsets and lengths are in bytes of the *virtual* disk; any alignment the format
/// needs (sectors, clusters, O_DIRECT) is handled inside. A request that does not
/// lie wholly inside `0..<virtualSize` fails with `.outOfBounds` and touches nothing.
///
/// Threading: an image is not thread-safe. One thread (the device's event loop)
/// owns it; `AsyncDiskEngine` runs its completions on that same thread.
public protocol DiskImage: AnyObject {
    /// Size of the virtual disk in bytes.
    var virtualSize: UInt64 { get }
    /// True when opened read-only; writes then fail with `.readOnly`.
    var isReadOnly: Bool { get }
    /// The on-disk format.
    var format: DiskFormat { get }
    /// The image file's path.
    var path: String { get }

    /// Fills `buffer` with the disk's bytes at `offset` (unallocated ranges read as
    /// zeroes or from the backing file).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
    /// Writes `buffer` at `offset`. Durable only after `flush()`.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws
    /// Makes every completed write durable (data and metadata).
    func flush() throws
    /// Tells the image the range is no longer needed: it reads back as zeroes
    /// afterwards (Skiff always zeroes; in an overlay the backing data is hidden too),
    /// and whole clusters/blocks are given back to the host file system.
    func discard(at offset: UInt64, length: UInt64) throws
    /// Makes the range read back as zeroes, deallocating where cheap.
    func writeZeroes(at offset: UInt64, length: UInt64) throws
    /// Releases the file (flushes first when writable). Further use fails. Also done on deinit.
    func close() throws

    /// Where the bytes of `0..<length` at `offset` live, for the async engine: runs of
    /// plain host-file data can go to the I/O threads, the rest is done synchronously.
    /// `forWrite` asks for ranges that can be overwritten in place.
    func dataExtents(at offset: UInt64, length: UInt64, forWrite: Bool) throws -> [DiskExtent]
    /// Alignment that buffer addresses, lengths and offsets of `.host` extents need
    /// for direct async I/O (4096 with O_DIRECT, 1 otherwise).
    var ioAlignment: Int { get }
}

/// The image file formats Skiff reads and writes.
public enum DiskFormat: String, Sendable, CaseIterable {
    case raw
    case qcow2
}

/// One run of a virtual-disk range, as `DiskImage.dataExtents` reports it.
public struct DiskExtent: Equatable, Sendable {
    public enum Location: Equatable, Sendable {
        /// Plain bytes in the image file: `fd` at `hostOffset`, safe for direct async I/O.
        case host(fd: Int32, hostOffset: UInt64)
        /// Reads as zeroes (unallocated with no backing, or a zero cluster). For reads only.
        case zero
        /// Needs the image's own synchronous path (backing file, compressed, allocating write,
        /// or a write that must pass a check, like sector 0 of a probed raw image).
        case synchronous
    }
    public var location: Location
    /// Offset in the virtual disk.
    public var offset: UInt64
    public var length: UInt64

    public init(_ location: Location, offset: UInt64, length: UInt64) {
        self.location = location
        self.offset = offset
        self.length = length
    }
}

extension DiskImage {
    /// Conservative default for images with no direct file mapping (test doubles,
    /// future formats): the engine then runs every request synchronously.
    public func dataExtents(at offset: UInt64, length: UInt64, forWrite: Bool) throws -> [DiskExtent] {
        try checkRange(offset, length)
        return [DiskExtent(.synchronous, offset: offset, length: length)]
    }

    public var ioAlignment: Int { 1 }

    /// Checks `offset..<offset+length` lies inside the virtual disk, without overflow.
    func checkRange(_ offset: UInt64, _ length: UInt64) throws {
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= virtualSize else {
            throw StorageError(.outOfBounds,
                "request \(offset)+\(length) is outside the \(virtualSize)-byte disk", path: path)
        }
    }

    func checkWritable() throws {
        guard !isReadOnly else { throw StorageError(.readOnly, "image is opened read-only", path: path) }
    }
}
