#if canImport(Glibc)
import Glibc
#endif

/// A qcow2 image (version 2 or 3), read-write, per QEMU's docs/interop/qcow2.txt.
///
/// Metadata (L2 tables, refcount blocks, L1 entries) is cached write-back and
/// written by `flush()` in crash-safe order: guest data and refcount increments
/// first, then L2 tables, then L1 entries, each step made durable before the next;
/// clusters freed by discard are only released after that. Guest data is written
/// straight to the file. A crash (or SIGKILL) can therefore lose unflushed writes
/// and leak clusters, but never leave metadata pointing at unwritten data or at a
/// cluster the refcounts call free.
public final class Qcow2Image: DiskImage {
    public let path: String
    public let isReadOnly: Bool
    public var format: DiskFormat { .qcow2 }
    public var virtualSize: UInt64 { header.size }
    public var ioAlignment: Int { file.alignment }
    /// The image below this one, if any.
    public let backing: DiskImage?
    /// Cluster size in bytes.
    public var clusterSize: UInt64 { header.clusterSize }
    public var version: Int { Int(header.version) }
    public var backingFileName: String? { header.backingFile }
    public var backingFormatName: String? { header.backingFormat }

    let file: ImageFile
    private(set) var header: Qcow2Header
    private var l1: [UInt64]
    private var dirtyL1 = Set<Int>()
    let l2Cache: Qcow2L2Cache
    let refcounts: RefcountTable
    /// Clusters known to hold metadata (header, tables, blocks): data must never land there.
    private var metadata = Set<UInt64>()
    /// Which L1 index owns each L2 table seen so far (two owners = corrupt).
    private var l2Owner: [UInt64: Int] = [:]
    private var closed = false
    /// Clusters written since a migration started tracking (Qcow2Image+Migration.swift).
    var writtenClusters: ClusterBitmap?
    private var compressedCache: (host: UInt64, data: [UInt8])?

    private var cs: UInt64 { header.clusterSize }
    private var bits: UInt32 { header.clusterBits }

    /// Opens a qcow2 image (format check, lock and backing chain included).
    public convenience init(path: String, readOnly: Bool = false, direct: Bool = false) throws {
        let file = try ImageFile.open(path, readOnly: readOnly, direct: direct)
        try ImageLock.acquire(file, writable: !readOnly)
        try self.init(file: file, chain: BackingChain(top: path))
    }

    /// - Parameter cacheBytes: memory for cached L2 tables (refcount blocks get half);
    ///   tests shrink it to exercise eviction.
    init(file: ImageFile, chain: BackingChain, cacheBytes: UInt64 = 32 << 20) throws {
        self.file = file
        path = file.path
        isReadOnly = file.readOnly
        let fileSize = try file.size()
        // Cluster 0 holds the header, extensions and backing file name.
        var start = [UInt8](repeating: 0, count: Int(min(fileSize, 1 << 21)))
        try start.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        var h = try Qcow2Header.parse(start, fileSize: fileSize, path: file.path)
        if !file.readOnly {
            if h.incompatibleFeatures & Qcow2Header.Incompatible.corrupt != 0 {
                throw StorageError(.corruptImage, "image is marked corrupt; repair it (qemu-img check -r all) or open it read-only", path: path)
            }
            if h.incompatibleFeatures & Qcow2Header.Incompatible.dirty != 0 {
                throw StorageError(.corruptImage, "image is dirty (refcounts may be stale after a crash with lazy refcounts); repair it with qemu-img check -r all or open it read-only", path: path)
            }
            if h.nbSnapshots > 0 {
                throw StorageError(.unsupportedFeature, "writing to images with internal snapshots (\(h.nbSnapshots)); open read-only", path: path)
            }
        }
        header = h
        var raw = [UInt8](repeating: 0, count: Int(h.l1Size) * 8)
        try raw.withUnsafeMutableBytes { try file.read(into: $0, at: h.l1TableOffset) }
        l1 = (0 ..< Int(h.l1Size)).map { raw.be64($0 * 8) }
        refcounts = try RefcountTable(file: file, header: h, fileSize: fileSize, cacheBytes: cacheBytes / 2)
        l2Cache = Qcow2L2Cache(capacity: max(2, Int(cacheBytes / h.clusterSize)))
        metadata.insert(0)
        let cs = h.clusterSize
        if h.l1Size > 0 {
            for c in h.l1TableOffset / cs ..< (h.l1TableOffset + UInt64(h.l1Size) * 8 + cs - 1) / cs { metadata.insert(c) }
        }
        for c in h.refcountTableOffset / cs ..< h.refcountTableOffset / cs + UInt64(h.refcountTableClusters) { metadata.insert(c) }
        if let name = h.backingFile {
            backing = try DiskImageOpener.openBacking(name: name, format: h.backingFormat, of: path, chain: chain)
        } else {
            backing = nil
        }
        refcounts.flushMetadata = { [unowned self] in try self.writeMetadata() }
        refcounts.noteMetadata = { [unowned self] in self.metadata.insert($0) }
        refcounts.isMetadata = { [unowned self] in self.metadata.contains($0) }
        refcounts.updateHeader = { [unowned self] offset, clusters in
            var b = [UInt8](repeating: 0, count: 12)
            b.putBE64(offset, at: 0)
            b.putBE32(clusters, at: 8)
            try b.withUnsafeBytes { try self.file.write($0, at: 48) }
            self.header.refcountTableOffset = offset
            self.header.refcountTableClusters = clusters
        }
        // Autoclear bits describe extensions we do not maintain: clear them before writing.
        if !file.readOnly && h.version >= 3 && h.autoclearFeatures != 0 {
            h.autoclearFeatures = 0
            header = h
            let zero = [UInt8](repeating: 0, count: 8)
            try zero.withUnsafeBytes { try file.write($0, at: 88) }
            try file.sync()
        }
    }

    deinit { try? close() }

    private func corrupt(_ why: String) -> StorageError { StorageError(.corruptImage, why, path: path) }

    private func checkOpen() throws {
        guard !closed else { throw StorageError(.invalidArgument, "image is closed", path: path) }
    }

    // MARK: - Mapping

    /// The L2 table for guest cluster `g`; nil when unallocated and `allocate` is false.
    private func l2Table(for g: UInt64, allocate: Bool) throws -> L2Table? {
        let l1i = Int(g / header.l2Entries)
        guard l1i < l1.count else { throw corrupt("guest cluster \(g) is beyond the L1 table") }
        let entry = l1[l1i]
        guard entry & Qcow2Entry.l1Reserved == 0 else {
            throw corrupt("L1 entry \(l1i) has reserved bits set (0x\(String(entry, radix: 16)))")
        }
        let off = entry & Qcow2Entry.offsetMask
        if off == 0 {
            guard allocate else { return nil }
            let newOff = try refcounts.allocate(1)
            metadata.insert(newOff / cs)
            let t = L2Table(offset: newOff, entries: [UInt64](repeating: 0, count: Int(header.l2Entries)))
            t.dirty = true
            try l2Cache.insert(t, flush: writeMetadata)
            l2Owner[newOff] = l1i
            l1[l1i] = newOff | Qcow2Entry.copied
            dirtyL1.insert(l1i)
            return t
        }
        guard off % cs == 0 else { throw corrupt("L1 entry \(l1i) is not cluster aligned") }
        if allocate && entry & Qcow2Entry.copied == 0 {
            // Shared L2 tables only come with internal snapshots, which we refuse to write.
            guard try refcounts.refcount(off / cs) == 1 else {
                throw StorageError(.unsupportedFeature, "L2 table \(off) is shared (refcount != 1)", path: path)
            }
            l1[l1i] = entry | Qcow2Entry.copied
            dirtyL1.insert(l1i)
        }
        if let owner = l2Owner[off], owner != l1i { throw corrupt("L1 entries \(owner) and \(l1i) share L2 table \(off)") }
        if let t = l2Cache.lookup(off) { return t }
        guard off / cs < refcounts.endCluster else { throw corrupt("L1 entry \(l1i) points past the end of the file (\(off))") }
        if metadata.contains(off / cs) && l2Owner[off] == nil {
            throw corrupt("L1 entry \(l1i) points at other metadata (offset \(off))")
        }
        var raw = [UInt8](repeating: 0, count: Int(cs))
        try raw.withUnsafeMutableBytes { try file.read(into: $0, at: off) }
        let t = L2Table(offset: off, entries: (0 ..< Int(header.l2Entries)).map { raw.be64($0 * 8) })
        try l2Cache.insert(t, flush: writeMetadata)
        metadata.insert(off / cs)
        l2Owner[off] = l1i
        return t
    }

    /// Decodes and validates the mapping of guest cluster `g` found at `index` in `t`.
    private func mapping(_ t: L2Table, _ index: Int) throws -> ClusterMapping {
        let m: ClusterMapping
        do {
            m = try ClusterMapping.decode(t.entries[index], clusterBits: bits, version: header.version)
        } catch let e as StorageError {
            throw e.at(path)
        }
        switch m {
        case .data(let host, _), .zero(let host?, _):
            guard host / cs < refcounts.endCluster else { throw corrupt("L2 entry points past the end of the file (\(host))") }
            guard !metadata.contains(host / cs) else { throw corrupt("L2 entry points at metadata (offset \(host))") }
        case .compressed(let host, let length):
            guard let end = host.adding(length), (end - 1) / cs < refcounts.endCluster, host >= cs else {
                throw corrupt("compressed cluster at \(host)+\(length) lies outside the file")
            }
        default: break
        }
        return m
    }

    var l2EntriesPerTable: UInt64 { header.l2Entries }

    /// False when the L1 entry covering guest cluster `g` maps no L2 table.
    func hasL2Table(for g: UInt64) throws -> Bool {
        try l2Table(for: g, allocate: false) != nil
    }

    func lookup(_ g: UInt64) throws -> ClusterMapping {
        guard let t = try l2Table(for: g, allocate: false) else { return .unallocated }
        return try mapping(t, Int(g % header.l2Entries))
    }

    // MARK: - Read

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try checkOpen()
        try checkRange(offset, UInt64(buffer.count))
        var done = 0
        while done < buffer.count {
            let pos = offset + UInt64(done)
            let g = pos / cs, inCluster = pos % cs
            let n = Int(min(cs - inCluster, UInt64(buffer.count - done)))
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[done ..< done + n])
            switch try lookup(g) {
            case .unallocated:
                try readBacking(into: part, at: pos)
            case .zero:
                part.initializeMemory(as: UInt8.self, repeating: 0)
            case .data(let host, _):
                try file.read(into: part, at: host + inCluster)
            case .compressed(let host, let length):
                let data = try decompress(host: host, length: length)
                part.copyMemory(from: UnsafeRawBufferPointer(rebasing: data.withUnsafeBytes { $0 }[Int(inCluster) ..< Int(inCluster) + n]))
            }
            done += n
        }
    }

    /// Reads guest bytes from the backing file; past its end (or without one) reads zeroes.
    private func readBacking(into part: UnsafeMutableRawBufferPointer, at pos: UInt64) throws {
        guard let backing, pos < backing.virtualSize else {
            part.initializeMemory(as: UInt8.self, repeating: 0)
            return
        }
        let n = Int(min(UInt64(part.count), backing.virtualSize - pos))
        try backing.read(into: UnsafeMutableRawBufferPointer(rebasing: part[0 ..< n]), at: pos)
        if n < part.count { UnsafeMutableRawBufferPointer(rebasing: part[n...]).initializeMemory(as: UInt8.self, repeating: 0) }
    }

    private func decompress(host: UInt64, length: UInt64) throws -> [UInt8] {
        if let c = compressedCache, c.host == host { return c.data }
        guard length <= 2 * cs + 512 else { throw corrupt("compressed cluster at \(host) is \(length) bytes") }
        var input = [UInt8](repeating: 0, count: Int(length))
        try input.withUnsafeMutableBytes { try file.read(into: $0, at: host) }
        let data: [UInt8]
        do {
            data = try Inflate.inflate(input, expectedSize: Int(cs))
        } catch let e as StorageError {
            throw e.at(path)
        }
        compressedCache = (host, data)
        return data
    }

    // MARK: - Write

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkOpen()
        try checkWritable()
        try checkRange(offset, UInt64(buffer.count))
        noteWrite(at: offset, length: UInt64(buffer.count))
        var done = 0
        while done < buffer.count {
            let pos = offset + UInt64(done)
            let g = pos / cs, inCluster = pos % cs
            if inCluster == 0, UInt64(buffer.count - done) >= 2 * cs {
                let n = try allocateRun(g, clusters: UInt64(buffer.count - done) / cs,
                                        UnsafeRawBufferPointer(rebasing: buffer[done...]))
                if n > 0 { done += Int(n * cs); continue }
            }
            let n = Int(min(cs - inCluster, UInt64(buffer.count - done)))
            try writeCluster(g, at: inCluster, UnsafeRawBufferPointer(rebasing: buffer[done ..< done + n]))
            done += n
        }
    }

    /// Writes whole new clusters starting at guest cluster `g` as one contiguous host
    /// run and one write (sequential writes to a fresh image). Returns how many
    /// clusters it wrote; 0 when fewer than two consecutive clusters need allocating.
    private func allocateRun(_ g: UInt64, clusters limit: UInt64, _ data: UnsafeRawBufferPointer) throws -> UInt64 {
        var tables: [(L2Table, Int, ClusterMapping)] = []
        // One L2 table per run: holding several across cache insertions could keep
        // an evicted table whose updates would then be lost.
        let inTable = header.l2Entries - g % header.l2Entries
        let maxRun = min(limit, inTable, max(2, (4 << 20) / cs)) // at most 4 MiB per write
        guard let t = try l2Table(for: g, allocate: true) else { return 0 }
        while UInt64(tables.count) < maxRun {
            let gi = g + UInt64(tables.count)
            let index = Int(gi % header.l2Entries)
            let m = try mapping(t, index)
            guard m == .unallocated || m == .zero(preallocated: nil, copied: false) || m == .zero(preallocated: nil, copied: true)
                || { if case .compressed = m { return true } else { return false } }() else { break }
            tables.append((t, index, m))
        }
        guard tables.count >= 2 else { return 0 }
        let n = UInt64(tables.count)
        let host = try refcounts.allocate(n)
        try file.write(UnsafeRawBufferPointer(rebasing: data[0 ..< Int(n * cs)]), at: host)
        guard let live = try l2Table(for: g, allocate: true), live === t else {
            throw corrupt("L2 table for guest cluster \(g) changed during allocation")
        }
        for (k, (t, index, m)) in tables.enumerated() {
            releaseHostClusters(of: m)
            t.entries[index] = (host + UInt64(k) * cs) | Qcow2Entry.copied
            t.dirty = true
        }
        return n
    }

    /// Writes `data` into guest cluster `g` at `inCluster`, allocating (with copy-up
    /// from the backing file, a compressed cluster or zeroes) when needed.
    private func writeCluster(_ g: UInt64, at inCluster: UInt64, _ data: UnsafeRawBufferPointer) throws {
        guard let t = try l2Table(for: g, allocate: true) else { throw corrupt("no L2 table after allocation") }
        let index = Int(g % header.l2Entries)
        let m = try mapping(t, index)
        if case .data(let host, let copied) = m {
            if !copied {
                guard try refcounts.refcount(host / cs) == 1 else {
                    throw StorageError(.unsupportedFeature, "data cluster \(host) is shared (refcount != 1)", path: path)
                }
                t.entries[index] |= Qcow2Entry.copied
                t.dirty = true
            }
            try file.write(data, at: host + inCluster)
            return
        }
        // A new cluster: build its full contents so the file never holds a half-written cluster.
        let full = try AlignedBuffer(count: Int(cs), alignment: max(file.alignment, 16))
        if data.count < Int(cs) {
            switch m {
            case .unallocated: try readBacking(into: full.bytes, at: g * cs)
            case .compressed(let host, let length):
                let old = try decompress(host: host, length: length)
                old.withUnsafeBytes { full.bytes.copyMemory(from: $0) }
            default: break // zero clusters: already zero-filled
            }
        }
        UnsafeMutableRawBufferPointer(rebasing: full.bytes[Int(inCluster) ..< Int(inCluster) + data.count]).copyMemory(from: data)
        let host: UInt64
        if case .zero(let pre?, true) = m {
            host = pre // a preallocated zero cluster we own: reuse it
        } else {
            host = try refcounts.allocate(1)
            releaseHostClusters(of: m)
        }
        try file.write(UnsafeRawBufferPointer(full.bytes), at: host)
        t.entries[index] = host | Qcow2Entry.copied
        t.dirty = true
    }

    /// Queues the host clusters an old mapping referenced for freeing after the next metadata flush.
    private func releaseHostClusters(of m: ClusterMapping) {
        switch m {
        case .data(let host, _), .zero(let host?, _):
            refcounts.deferFree(host / cs)
        case .compressed(let host, let length):
            for c in host / cs ... (host + length - 1) / cs { refcounts.deferFree(c) }
            if compressedCache?.host == host { compressedCache = nil }
        default: break
        }
    }

    // MARK: - Discard and zeroes

    public func discard(at offset: UInt64, length: UInt64) throws {
        try zeroRange(offset, length)
    }

    public func writeZeroes(at offset: UInt64, length: UInt64) throws {
        try zeroRange(offset, length)
    }

    /// Makes the range read as zeroes: whole clusters lose their data (unallocated
    /// when nothing below shows through, else a v3 zero cluster); partial clusters
    /// that hold data get zeroes written.
    private func zeroRange(_ offset: UInt64, _ length: UInt64) throws {
        try checkOpen()
        try checkWritable()
        try checkRange(offset, length)
        noteWrite(at: offset, length: length)
        var pos = offset
        let end = offset + length
        while pos < end {
            let g = pos / cs, inCluster = pos % cs
            let n = min(cs - inCluster, end - pos)
            let m = try lookup(g)
            let readsZero: Bool
            switch m {
            case .zero: readsZero = true
            case .unallocated: readsZero = backing == nil || g * cs >= backing!.virtualSize
            default: readsZero = false
            }
            if n < cs {
                if !readsZero {
                    let zeroes = try AlignedBuffer(count: Int(n))
                    try writeCluster(g, at: inCluster, UnsafeRawBufferPointer(zeroes.bytes))
                }
            } else if !readsZero || (m != .unallocated && backing != nil) {
                try zeroWholeCluster(g, m)
            }
            pos += n
        }
    }

    private func zeroWholeCluster(_ g: UInt64, _ m: ClusterMapping) throws {
        let needZeroFlag = backing.map { g * cs < $0.virtualSize } ?? false
        if needZeroFlag && header.version < 3 {
            // Version 2 has no zero flag: hide the backing data with a cluster of zeroes.
            let zeroes = try AlignedBuffer(count: Int(cs))
            return try writeCluster(g, at: 0, UnsafeRawBufferPointer(zeroes.bytes))
        }
        guard let t = try l2Table(for: g, allocate: needZeroFlag) else { return }
        let index = Int(g % header.l2Entries)
        releaseHostClusters(of: m)
        t.entries[index] = needZeroFlag ? Qcow2Entry.zeroFlag : 0
        t.dirty = true
    }

    // MARK: - Flush

    /// Writes dirty metadata in crash-safe order and makes it durable, then releases
    /// clusters freed since the last flush.
    private func writeMetadata() throws {
        let dirtyL2 = l2Cache.dirtyTables
        guard refcounts.hasDirty || !dirtyL2.isEmpty || !dirtyL1.isEmpty || !refcounts.pendingFrees.isEmpty else { return }
        // 1. Refcount increments (blocks, then table entries), then one sync that also covers guest data.
        try refcounts.writeDirty()
        try file.sync()
        // 2. L2 tables, durable before any L1 entry points at them.
        if !dirtyL2.isEmpty {
            for t in dirtyL2 {
                try t.encoded().withUnsafeBytes { try file.write($0, at: t.offset) }
                t.dirty = false
            }
            if !dirtyL1.isEmpty { try file.sync() }
        }
        // 3. L1 entries.
        if !dirtyL1.isEmpty {
            for i in dirtyL1.sorted() {
                var e = [UInt8](repeating: 0, count: 8)
                e.putBE64(l1[i], at: 0)
                try e.withUnsafeBytes { try file.write($0, at: header.l1TableOffset + UInt64(i) * 8) }
            }
            dirtyL1.removeAll()
        }
        try file.sync()
        // 4. Only now may dropped clusters become free on disk, and their space go back to the host.
        if !refcounts.pendingFrees.isEmpty {
            let freed = try refcounts.applyPendingFrees()
            try refcounts.writeDirty()
            try file.sync()
            for c in freed where !metadata.contains(c) {
                try? file.zeroRange(at: c * cs, length: cs, punch: true)
            }
        }
    }

    public func flush() throws {
        try checkOpen()
        guard !isReadOnly else { return }
        let before = refcounts.hasDirty || !l2Cache.dirtyTables.isEmpty || !dirtyL1.isEmpty || !refcounts.pendingFrees.isEmpty
        try writeMetadata()
        if !before { try file.sync() } // data only
    }

    public func close() throws {
        guard !closed else { return }
        defer { closed = true; file.close() }
        if !isReadOnly { try writeMetadata(); try file.sync() }
        try backing?.close()
    }

    // MARK: - Async support

    public func dataExtents(at offset: UInt64, length: UInt64, forWrite: Bool) throws -> [DiskExtent] {
        try checkOpen()
        try checkRange(offset, length)
        if forWrite {
            try checkWritable()
            noteWrite(at: offset, length: length)
        }
        var out: [DiskExtent] = []
        var pos = offset
        let end = offset + length
        while pos < end {
            let g = pos / cs, inCluster = pos % cs
            let n = min(cs - inCluster, end - pos)
            let loc: DiskExtent.Location
            switch try lookup(g) {
            case .data(let host, let copied):
                loc = (!forWrite || copied) ? .host(fd: file.fd, hostOffset: host + inCluster) : .synchronous
            case .zero:
                loc = forWrite ? .synchronous : .zero
            case .unallocated:
                loc = forWrite || (backing.map { g * cs < $0.virtualSize } ?? false) ? .synchronous : .zero
            case .compressed:
                loc = .synchronous
            }
            if var last = out.last, last.offset + last.length == pos {
                var merge = false
                switch (last.location, loc) {
                case (.host(_, let h), .host(_, let h2)): merge = h + last.length == h2
                case (.zero, .zero), (.synchronous, .synchronous): merge = true
                default: break
                }
                if merge {
                    last.length += n
                    out[out.count - 1] = last
                    pos += n
                    continue
                }
            }
            out.append(DiskExtent(loc, offset: pos, length: n))
            pos += n
        }
        return out
    }

    // MARK: - Inspection

    /// Bytes the image file occupies on the host.
    public var allocatedBytes: UInt64 {
        var st = stat()
        return fstat(file.fd, &st) == 0 ? UInt64(max(0, st.st_blocks)) * 512 : 0
    }

    /// The backing chain below this image, nearest first: (path, format).
    public var backingChain: [(path: String, format: DiskFormat)] {
        var out: [(String, DiskFormat)] = []
        var next = backing
        while let b = next {
            out.append((b.path, b.format))
            next = (b as? Qcow2Image)?.backing
        }
        return out
    }
}
