import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Guest RAM: a memfd mapped `MAP_SHARED` into the VMM, split into regions at
/// guest-physical addresses. The only place in Skiff that turns guest addresses into
/// host pointers; every access is bounds- and overflow-checked.
///
/// Safe to use from several threads at once: the layout never changes after init,
/// and concurrent access to the bytes themselves is the guest's business.
public final class GuestMemory: @unchecked Sendable {
    public let regions: [GuestMemoryRegion]
    /// The memfd holding all regions back to back.
    public let fileDescriptor: Int32
    public let totalSize: UInt64

    /// Creates RAM for the given `(start, size)` ranges. Sizes and starts must be
    /// page-aligned and the ranges must not overlap.
    public init(ranges: [(start: GuestAddress, size: UInt64)]) throws {
        let sorted = ranges.sorted { $0.start < $1.start }
        var total: UInt64 = 0
        var previousEnd: UInt64 = 0
        for (index, range) in sorted.enumerated() {
            guard range.size > 0, range.size % 4096 == 0, range.start.rawValue % 4096 == 0 else {
                throw GuestMemoryError.invalidLayout("range \(range.start)+\(range.size) is empty or not page-aligned")
            }
            guard range.start.adding(range.size) != nil else {
                throw GuestMemoryError.invalidLayout("range \(range.start)+\(range.size) wraps")
            }
            if index > 0, range.start.rawValue < previousEnd {
                throw GuestMemoryError.invalidLayout("ranges overlap at \(range.start)")
            }
            previousEnd = range.start.rawValue + range.size
            total += range.size
        }
        guard !sorted.isEmpty else { throw GuestMemoryError.invalidLayout("no RAM") }

        let fd = ckvm_memfd_create("skiff-guest-ram", CKVM_MFD_CLOEXEC)
        guard fd >= 0 else { throw GuestMemoryError.hostFailure(operation: "memfd_create", errno: errno) }
        guard ftruncate(fd, off_t(total)) == 0 else {
            let e = errno
            close(fd)
            throw GuestMemoryError.hostFailure(operation: "ftruncate guest RAM to \(total) bytes", errno: e)
        }
        var regions: [GuestMemoryRegion] = []
        var offset: UInt64 = 0
        for range in sorted {
            let p = mmap(nil, Int(range.size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, off_t(offset))
            guard let p, p != MAP_FAILED else {
                let e = errno
                for r in regions { munmap(r.hostAddress, Int(r.size)) }
                close(fd)
                throw GuestMemoryError.hostFailure(operation: "mmap guest RAM", errno: e)
            }
            regions.append(GuestMemoryRegion(start: range.start, size: range.size, fileOffset: offset, hostAddress: p))
            offset += range.size
        }
        self.regions = regions
        self.fileDescriptor = fd
        self.totalSize = total
    }

    deinit {
        for r in regions { munmap(r.hostAddress, Int(r.size)) }
        close(fileDescriptor)
    }

    /// The region holding `address`, if any.
    public func region(containing address: GuestAddress) -> GuestMemoryRegion? {
        for r in regions where r.contains(address) { return r }
        return nil
    }

    /// A host view of `length` bytes at `address`. The range must lie inside one
    /// region: devices doing zero-copy I/O get a single contiguous buffer.
    public func buffer(at address: GuestAddress, length: UInt64) throws -> UnsafeMutableRawBufferPointer {
        guard let r = region(containing: address) else {
            if length == 0, regions.contains(where: { $0.end == address.rawValue }) {
                return UnsafeMutableRawBufferPointer(start: nil, count: 0)
            }
            throw GuestMemoryError.invalidAddress(address)
        }
        let offset = address.rawValue - r.start.rawValue
        guard length <= r.size - offset else {
            throw GuestMemoryError.rangeOutOfBounds(address, length: length)
        }
        // SAFETY: offset + length <= r.size, checked above without overflow.
        return UnsafeMutableRawBufferPointer(start: r.hostAddress + Int(offset), count: Int(length))
    }

    /// True when `[address, address+length)` is entirely guest RAM in one region.
    public func isValid(_ address: GuestAddress, length: UInt64) -> Bool {
        (try? buffer(at: address, length: length)) != nil
    }

    // MARK: - Byte copies

    /// Copies guest bytes into `destination`; the range may span regions only if
    /// they are contiguous in guest-physical space.
    public func read(into destination: UnsafeMutableRawBufferPointer, from address: GuestAddress) throws {
        try forEachChunk(address, length: UInt64(destination.count)) { chunk, done in
            destination.baseAddress!.advanced(by: done).copyMemory(from: chunk.baseAddress!, byteCount: chunk.count)
        }
    }

    /// Copies `source` into guest memory at `address`.
    public func write(_ source: UnsafeRawBufferPointer, to address: GuestAddress) throws {
        try forEachChunk(address, length: UInt64(source.count)) { chunk, done in
            chunk.baseAddress!.copyMemory(from: source.baseAddress!.advanced(by: done), byteCount: chunk.count)
        }
    }

    public func read(from address: GuestAddress, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try read(into: $0, from: address) }
        return bytes
    }

    public func write(_ bytes: [UInt8], to address: GuestAddress) throws {
        try bytes.withUnsafeBytes { try write($0, to: address) }
    }

    /// Fills `length` bytes at `address` with zeros.
    public func zero(_ address: GuestAddress, length: UInt64) throws {
        try forEachChunk(address, length: length) { chunk, _ in
            chunk.initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    // MARK: - Little-endian scalars

    /// Loads a little-endian integer. Unaligned addresses are fine.
    public func load<T: FixedWidthInteger>(_ type: T.Type = T.self, from address: GuestAddress) throws -> T {
        let b = try buffer(at: address, length: UInt64(MemoryLayout<T>.size))
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }

    /// Stores a little-endian integer.
    public func store<T: FixedWidthInteger>(_ value: T, to address: GuestAddress) throws {
        let b = try buffer(at: address, length: UInt64(MemoryLayout<T>.size))
        b.storeBytes(of: value.littleEndian, as: T.self)
    }

    /// Walks `[address, address+length)` region by region, failing before touching
    /// anything if any byte of the range is outside RAM.
    private func forEachChunk(_ address: GuestAddress, length: UInt64,
                              _ body: (UnsafeMutableRawBufferPointer, Int) -> Void) throws {
        guard length > 0 else { return }
        guard address.adding(length) != nil else { throw GuestMemoryError.rangeOutOfBounds(address, length: length) }
        // First validate the whole range, then copy: no partial writes on error.
        var chunks: [(UnsafeMutableRawBufferPointer, Int)] = []
        var cursor = address
        var done: UInt64 = 0
        while done < length {
            guard let r = region(containing: cursor) else {
                throw done == 0 ? GuestMemoryError.invalidAddress(address)
                                : GuestMemoryError.rangeOutOfBounds(address, length: length)
            }
            let offset = cursor.rawValue - r.start.rawValue
            let n = min(r.size - offset, length - done)
            chunks.append((UnsafeMutableRawBufferPointer(start: r.hostAddress + Int(offset), count: Int(n)), Int(done)))
            done += n
            cursor = GuestAddress(cursor.rawValue + n)
        }
        for (chunk, at) in chunks { body(chunk, at) }
    }
}
