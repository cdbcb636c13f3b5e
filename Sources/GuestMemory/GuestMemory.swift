import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Guest RAM, split into regions at guest-physical addresses: normally a memfd
/// mapped `MAP_SHARED` into the VMM; for a restored VM a snapshot's memory file
/// mapped `MAP_PRIVATE` (see `init(mappingPrivately:ranges:)`). The only place in Skiff that turns guest addresses into
/// host pointers; every access is bounds- and overflow-checked.
///
/// Safe to use from several threads at once: the layout never changes after init,
/// and concurrent access to the bytes themselves is the guest's business.
public final class GuestMemory: Sendable {
    public let regions: [GuestMemoryRegion]
    /// The file holding all regions back to back: the memfd, or the snapshot's
    /// memory file (opened read-only) for `.privateFile` RAM.
    public let fileDescriptor: Int32
    public let totalSize: UInt64
    public let backing: Backing
    /// Pages the VMM wrote through `write`, `store` and `zero` (KVM's dirty log
    /// sees only vCPU writes). Always kept: one atomic OR per call.
    public let writtenPages: PageBitmap
    /// Pages handed out by `buffer(at:length:)`, which callers may write later
    /// (zero-copy I/O): marked when handed out, so a migration treats them as
    /// dirty until the devices are quiet (see docs/migration.md).
    public let handedOutPages: PageBitmap

    /// Where the bytes of guest RAM live.
    public enum Backing: Sendable, Equatable {
        /// A memfd, shared: the file is the RAM, and its holes are never-touched pages
        /// (SEEK_DATA/SEEK_HOLE find what the guest used).
        case memfd
        /// A file mapped copy-on-write: pages are read from it on first touch, and
        /// a page the guest writes becomes private anonymous memory the file never
        /// sees. The file tells nothing about what changed; read the mapping.
        case privateFile
    }

    /// Creates RAM for the given `(start, size)` ranges. Sizes and starts must be
    /// page-aligned and the ranges must not overlap.
    public init(ranges: [(start: GuestAddress, size: UInt64)]) throws {
        let (sorted, total) = try Self.checkLayout(ranges)
        let fd = ckvm_memfd_create("skiff-guest-ram", CKVM_MFD_CLOEXEC)
        guard fd >= 0 else { throw GuestMemoryError.hostFailure(operation: "memfd_create", errno: errno) }
        guard ftruncate(fd, off_t(total)) == 0 else {
            let e = errno
            close(fd)
            throw GuestMemoryError.hostFailure(operation: "ftruncate guest RAM to \(total) bytes", errno: e)
        }
        self.regions = try Self.map(sorted, fd: fd, flags: MAP_SHARED)
        self.fileDescriptor = fd
        self.totalSize = total
        self.backing = .memfd
        writtenPages = PageBitmap(pages: Int(total / 4096))
        handedOutPages = PageBitmap(pages: Int(total / 4096))
    }

    /// Guest RAM mapped lazily and copy-on-write from `path` (a snapshot's memory
    /// file: the ranges back to back from offset 0). Nothing is read now; each page
    /// is read when first touched, and guest writes never reach the file. The file
    /// must be exactly as large as the ranges.
    public init(mappingPrivately path: String, ranges: [(start: GuestAddress, size: UInt64)]) throws {
        let (sorted, total) = try Self.checkLayout(ranges)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw GuestMemoryError.hostFailure(operation: "open \(path)", errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw GuestMemoryError.hostFailure(operation: "fstat \(path)", errno: e)
        }
        // A shorter file would SIGBUS on the first touch past its end.
        guard st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_size) == total else {
            close(fd)
            throw GuestMemoryError.invalidLayout("\(path) is \(st.st_size) bytes, not a regular file of \(total)")
        }
        self.regions = try Self.map(sorted, fd: fd, flags: MAP_PRIVATE)
        self.fileDescriptor = fd
        self.totalSize = total
        self.backing = .privateFile
        writtenPages = PageBitmap(pages: Int(total / 4096))
        handedOutPages = PageBitmap(pages: Int(total / 4096))
    }

    /// Sorted, page-aligned, non-empty, non-overlapping, non-wrapping ranges, and their total.
    private static func checkLayout(_ ranges: [(start: GuestAddress, size: UInt64)]) throws
        -> ([(start: GuestAddress, size: UInt64)], UInt64) {
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
        return (sorted, total)
    }

    /// Maps the ranges back to back from offset 0 of `fd`; closes `fd` on failure.
    private static func map(_ sorted: [(start: GuestAddress, size: UInt64)], fd: Int32, flags: Int32) throws
        -> [GuestMemoryRegion] {
        var regions: [GuestMemoryRegion] = []
        var offset: UInt64 = 0
        for range in sorted {
            let p = mmap(nil, Int(range.size), PROT_READ | PROT_WRITE, flags | MAP_NORESERVE, fd, off_t(offset))
            guard let p, p != MAP_FAILED else {
                let e = errno
                for r in regions { munmap(r.hostAddress, Int(r.size)) }
                close(fd)
                throw GuestMemoryError.hostFailure(operation: "mmap guest RAM", errno: e)
            }
            regions.append(GuestMemoryRegion(start: range.start, size: range.size, fileOffset: offset, hostAddress: p))
            offset += range.size
        }
        return regions
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
        let b = try view(at: address, length: length)
        mark(handedOutPages, address, length: length)
        return b
    }

    /// `buffer(at:length:)` for an access that ends before the caller returns (a
    /// ring load or store, a `readv`/`writev` over the view): the pages are not
    /// marked as handed out, so a caller that writes through the view marks what it
    /// wrote with `markWritten`, and one that only reads marks nothing. Each mark is
    /// an atomic OR, and these run several times per request.
    public func transientBuffer(at address: GuestAddress, length: UInt64) throws -> UnsafeMutableRawBufferPointer {
        try view(at: address, length: length)
    }

    /// `buffer(at:length:)` without marking the pages as handed out.
    private func view(at address: GuestAddress, length: UInt64) throws -> UnsafeMutableRawBufferPointer {
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
        (try? view(at: address, length: length)) != nil
    }

    /// Marks the pages of `[address, address+length)` in `bitmap` (RAM-file order).
    private func mark(_ bitmap: PageBitmap, _ address: GuestAddress, length: UInt64) {
        var cursor = address.rawValue
        let end = address.rawValue &+ length
        while cursor < end, let r = region(containing: GuestAddress(cursor)) {
            let stop = min(end, r.start.rawValue + r.size)
            let first = (r.fileOffset + cursor - r.start.rawValue) / 4096
            let last = (r.fileOffset + stop - r.start.rawValue - 1) / 4096
            bitmap.mark(first: Int(first), count: Int(last - first + 1))
            cursor = stop
        }
    }

    /// Marks pages the VMM changed through a host view of its own (a migration's
    /// receiver marks nothing; devices doing zero-copy writes may call this on completion).
    public func markWritten(_ address: GuestAddress, length: UInt64) {
        mark(writtenPages, address, length: length)
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
        mark(writtenPages, address, length: UInt64(source.count))
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
        mark(writtenPages, address, length: length)
    }

    // MARK: - Little-endian scalars

    /// Loads a little-endian integer. Unaligned addresses are fine.
    public func load<T: FixedWidthInteger>(_ type: T.Type = T.self, from address: GuestAddress) throws -> T {
        let b = try view(at: address, length: UInt64(MemoryLayout<T>.size))
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }

    /// Stores a little-endian integer.
    public func store<T: FixedWidthInteger>(_ value: T, to address: GuestAddress) throws {
        let b = try view(at: address, length: UInt64(MemoryLayout<T>.size))
        b.storeBytes(of: value.littleEndian, as: T.self)
        mark(writtenPages, address, length: UInt64(MemoryLayout<T>.size))
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
