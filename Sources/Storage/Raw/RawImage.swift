#if canImport(Glibc)
import Glibc
#endif

/// A raw image: the file *is* the disk. Sparse: the file is created with
/// ftruncate (no blocks), and discard / write-zeroes punch holes.
public final class RawImage: DiskImage {
    public let path: String
    public let virtualSize: UInt64
    public let isReadOnly: Bool
    public var format: DiskFormat { .raw }
    let file: ImageFile
    /// The format was guessed, not given: refuse writes that would make the first
    /// sector look like a qcow2 (or other) header (a guest could otherwise make the
    /// next auto-detecting open, ours or QEMU's, read host files through a forged
    /// backing file). Every write path must pass `write`'s check: `dataExtents`
    /// sends writes touching sector 0 there instead of to async I/O.
    let formatWasProbed: Bool
    /// Leading bytes that make a file probe as something other than raw: qcow2 and
    /// qcow ("QFI\xfb"), and formats QEMU also probes that can name other files
    /// (QED, VMDK sparse and COWD, VHDX, VPC, LUKS).
    static let formatSignatures: [[UInt8]] = [
        Qcow2Header.magicBytes, Array("QED\0".utf8), Array("KDMV".utf8), Array("COWD".utf8),
        Array("vhdxfile".utf8), Array("conectix".utf8), [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe],
    ]
    static let signatureBytes = 8
    static let firstSector: UInt64 = 512
    private var closed = false

    /// Creates a sparse raw image of `size` bytes; fails if `path` exists.
    public static func create(path: String, size: UInt64) throws {
        guard size <= UInt64(Int64.max) else { throw StorageError(.invalidArgument, "size \(size) is too large") }
        let file = try ImageFile.open(path, readOnly: false, create: true)
        try file.truncate(to: size)
    }

    init(file: ImageFile, formatWasProbed: Bool = false) throws {
        self.file = file
        self.path = file.path
        self.isReadOnly = file.readOnly
        self.virtualSize = try file.size()
        self.formatWasProbed = formatWasProbed
    }

    /// Opens a raw image (takes the image lock). `direct` uses O_DIRECT.
    public convenience init(path: String, readOnly: Bool = false, direct: Bool = false) throws {
        let file = try ImageFile.open(path, readOnly: readOnly, direct: direct)
        try ImageLock.acquire(file, writable: !readOnly)
        try self.init(file: file)
    }

    deinit { try? close() }

    private func checkOpen() throws {
        guard !closed else { throw StorageError(.invalidArgument, "image is closed", path: path) }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try checkOpen()
        try checkRange(offset, UInt64(buffer.count))
        try file.read(into: buffer, at: offset)
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkOpen()
        try checkWritable()
        try checkRange(offset, UInt64(buffer.count))
        if formatWasProbed, offset < UInt64(Self.signatureBytes), buffer.count > 0 {
            try refuseFormatSignature(buffer, at: offset)
        }
        try file.write(buffer, at: offset)
    }

    /// Throws if writing `buffer` at `offset` would leave a format signature at the
    /// start of the file (merging with the bytes already there: a guest may write
    /// the signature a byte at a time).
    private func refuseFormatSignature(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var head = [UInt8](repeating: 0, count: Self.signatureBytes)
        try head.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        let start = Int(offset) // < signatureBytes, checked by the caller
        for i in 0 ..< min(Self.signatureBytes - start, buffer.count) { head[start + i] = buffer[i] }
        if let sig = Self.formatSignatures.first(where: { head.starts(with: $0) }) {
            let name = sig == Qcow2Header.magicBytes ? "a qcow2" : "an image format"
            throw StorageError(.invalidArgument,
                "refusing to write \(name) signature into sector 0 of a raw image opened without an explicit format (give format=raw to allow it)",
                path: path)
        }
    }

    public func flush() throws {
        try checkOpen()
        if !isReadOnly { try file.sync() }
    }

    public func discard(at offset: UInt64, length: UInt64) throws {
        try writeZeroes(at: offset, length: length)
    }

    public func writeZeroes(at offset: UInt64, length: UInt64) throws {
        try checkOpen()
        try checkWritable()
        try checkRange(offset, length)
        if formatWasProbed, offset < UInt64(Self.signatureBytes), length > 0 {
            // Zeroes can complete a signature that contains a zero byte (QED's "QED\0").
            let zeroes = [UInt8](repeating: 0, count: Int(min(length, UInt64(Self.signatureBytes) - offset)))
            try zeroes.withUnsafeBytes { try refuseFormatSignature($0, at: offset) }
        }
        try file.zeroRange(at: offset, length: length)
    }

    public func close() throws {
        guard !closed else { return }
        defer { closed = true; file.close() }
        if !isReadOnly { try file.sync() }
    }

    public func dataExtents(at offset: UInt64, length: UInt64, forWrite: Bool) throws -> [DiskExtent] {
        try checkOpen()
        try checkRange(offset, length)
        // Writes to sector 0 of a probed image go through `write`, which checks for a forged header.
        if forWrite, formatWasProbed, offset < Self.firstSector, length > 0 {
            return [DiskExtent(.synchronous, offset: offset, length: length)]
        }
        return [DiskExtent(.host(fd: file.fd, hostOffset: offset), offset: offset, length: length)]
    }

    public var ioAlignment: Int { file.alignment }

    /// Bytes the file really occupies on the host (sparse files use less).
    public var allocatedBytes: UInt64 {
        var st = stat()
        return fstat(file.fd, &st) == 0 ? UInt64(max(0, st.st_blocks)) * 512 : 0
    }
}
