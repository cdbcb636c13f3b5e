/// One refcount block in memory (raw big-endian bytes, as on disk).
final class RefcountBlock {
    let offset: UInt64
    var bytes: [UInt8]
    var dirty = false
    var lastUse: UInt64 = 0
    init(offset: UInt64, bytes: [UInt8]) {
        self.offset = offset
        self.bytes = bytes
    }
}

/// The refcount structure of a qcow2 image: the refcount table, a write-back
/// cache of refcount blocks, and the cluster allocator built on them.
///
/// Why deferred frees: a cluster must not look free on disk while an L2 entry on
/// disk still points at it, so decrements wait in `pendingFrees` until the image's
/// flush has written the L2/L1 tables that dropped the reference. Increments are
/// written before the tables that use them (see `Qcow2Image.flush`), so a crash
/// can leak clusters but never leave a reference to a free one.
final class RefcountTable {
    let file: ImageFile
    let clusterSize: UInt64
    let clusterBits: UInt32
    /// Bits per refcount (1, 2, 4, …, 64).
    let width: UInt64
    /// Refcounts per block.
    let entriesPerBlock: UInt64
    let maxRefcount: UInt64

    private(set) var table: [UInt64]
    private(set) var tableOffset: UInt64
    private(set) var tableClusters: UInt64
    private var dirtyTableEntries = Set<Int>()
    private var blocks: [UInt64: RefcountBlock] = [:]
    /// Every refcount block offset seen (cached or evicted), so a reload is not mistaken for overlap.
    private var knownBlocks = Set<UInt64>()
    private let blockCapacity: Int
    private var clock: UInt64 = 0
    /// Lowest cluster index that may be free.
    private var freeHint: UInt64 = 1
    /// Clusters whose last reference was dropped in memory; freed at the end of a flush.
    private(set) var pendingFrees: [UInt64] = []
    /// One past the highest cluster index the file holds or we allocated.
    private(set) var endCluster: UInt64
    /// Called before a dirty block would have to be evicted: the image writes all metadata.
    var flushMetadata: () throws -> Void = {}
    /// Called when the allocator places metadata (refcount blocks, tables) somewhere.
    var noteMetadata: (_ clusterIndex: UInt64) -> Void = { _ in }
    /// Clusters the allocator must never hand out (known metadata).
    var isMetadata: (_ clusterIndex: UInt64) -> Bool = { _ in false }
    /// Writes the new refcount table location into the header.
    var updateHeader: (_ offset: UInt64, _ clusters: UInt32) throws -> Void = { _, _ in }

    init(file: ImageFile, header: Qcow2Header, fileSize: UInt64, cacheBytes: UInt64 = 16 << 20) throws {
        self.file = file
        clusterSize = header.clusterSize
        clusterBits = header.clusterBits
        width = 1 << UInt64(header.refcountOrder)
        entriesPerBlock = clusterSize * 8 / width
        maxRefcount = width == 64 ? .max : (1 << width) - 1
        tableOffset = header.refcountTableOffset
        tableClusters = UInt64(header.refcountTableClusters)
        endCluster = (fileSize + clusterSize - 1) / clusterSize
        blockCapacity = max(4, Int(cacheBytes / clusterSize))
        var raw = [UInt8](repeating: 0, count: Int(UInt64(header.refcountTableClusters) * header.clusterSize))
        let at = header.refcountTableOffset
        try raw.withUnsafeMutableBytes { try file.read(into: $0, at: at) }
        table = (0 ..< raw.count / 8).map { raw.be64($0 * 8) }



    }

    private func corrupt(_ why: String) -> StorageError { StorageError(.corruptImage, why, path: file.path) }

    /// The cluster offset of refcount block `index`, validated, or 0 when none.
    func blockOffset(_ index: Int) throws -> UInt64 {
        guard index < table.count else { return 0 }
        let e = table[index]
        guard e & ~Qcow2Entry.refcountTableOffsetMask == 0 else {
            throw corrupt("refcount table entry \(index) has reserved bits set (0x\(String(e, radix: 16)))")
        }
        if e == 0 { return 0 }
        guard e % clusterSize == 0, e / clusterSize < endCluster else {
            throw corrupt("refcount table entry \(index) points outside the file (offset \(e))")
        }
        if e == tableOffset || (e >= tableOffset && e < tableOffset + tableClusters * clusterSize) {
            throw corrupt("refcount block \(index) overlaps the refcount table")
        }
        return e
    }

    private func block(at offset: UInt64) throws -> RefcountBlock {
        clock += 1
        if let b = blocks[offset] {
            b.lastUse = clock
            return b
        }
        if isMetadata(offset / clusterSize) && !knownBlocks.contains(offset) {
            // A refcount block that is also an L1/L2 table or the header: refuse.
            throw corrupt("refcount block at \(offset) overlaps other metadata")
        }
        var bytes = [UInt8](repeating: 0, count: Int(clusterSize))
        try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
        let b = RefcountBlock(offset: offset, bytes: bytes)
        try insert(b)
        knownBlocks.insert(offset)
        noteMetadata(offset / clusterSize)
        return b
    }

    private func insert(_ b: RefcountBlock) throws {
        if blocks.count >= blockCapacity {
            if blocks.values.allSatisfy(\.dirty) { try flushMetadata() }
            if let victim = blocks.values.filter({ !$0.dirty }).min(by: { $0.lastUse < $1.lastUse }) {
                blocks[victim.offset] = nil
            }
        }
        clock += 1
        b.lastUse = clock
        blocks[b.offset] = b
    }

    // MARK: Entry access (any width from 1 to 64 bits)

    private func value(in b: RefcountBlock, _ i: UInt64) -> UInt64 {
        let i = Int(i)
        switch width {
        case 64: return b.bytes.be64(i * 8)
        case 32: return UInt64(b.bytes.be32(i * 4))
        case 16: return UInt64(b.bytes.be16(i * 2))
        case 8: return UInt64(b.bytes[i])
        default:
            let w = Int(width), perByte = 8 / w
            return UInt64(b.bytes[i / perByte] >> UInt8((i % perByte) * w)) & ((1 << width) - 1)
        }
    }

    private func setValue(in b: RefcountBlock, _ i: UInt64, _ v: UInt64) {
        let i = Int(i)
        switch width {
        case 64: b.bytes.putBE64(v, at: i * 8)
        case 32: b.bytes.putBE32(UInt32(v), at: i * 4)
        case 16: b.bytes.putBE16(UInt16(v), at: i * 2)
        case 8: b.bytes[i] = UInt8(v)
        default:
            let w = Int(width), perByte = 8 / w
            let shift = UInt8((i % perByte) * w)
            let mask = UInt8((1 << width) - 1) << shift
            b.bytes[i / perByte] = (b.bytes[i / perByte] & ~mask) | (UInt8(v) << shift)
        }
        b.dirty = true
    }

    /// The refcount of cluster `index` (0 where no block covers it).
    func refcount(_ index: UInt64) throws -> UInt64 {
        let bi = index / entriesPerBlock
        guard bi < UInt64(table.count) else { return 0 }
        let off = try blockOffset(Int(bi))
        if off == 0 { return 0 }
        return value(in: try block(at: off), index % entriesPerBlock)
    }

    /// Sets the refcount of a cluster whose block exists (allocating the block if needed).
    func setRefcount(_ index: UInt64, _ v: UInt64) throws {
        guard v <= maxRefcount else { throw corrupt("refcount of cluster \(index) would overflow \(width) bits") }
        let bi = index / entriesPerBlock
        var off = try blockOffset(Int(min(bi, UInt64(Int.max))))
        if off == 0 {
            try createBlock(Int(bi), near: index)
            off = try blockOffset(Int(bi))
        }
        setValue(in: try block(at: off), index % entriesPerBlock, v)
        if v == 0 { freeHint = min(freeHint, index) }
    }

    /// Adds `delta` (±1) to a cluster's refcount.
    func adjust(_ index: UInt64, by delta: Int) throws {
        let v = try refcount(index)
        if delta < 0 {
            guard v > 0 else { throw corrupt("freeing cluster \(index) whose refcount is already 0") }
            try setRefcount(index, v - 1)
        } else {
            // 64-bit refcounts have no headroom for setRefcount's check: catch the wrap here.
            guard v < maxRefcount else { throw corrupt("refcount of cluster \(index) would overflow \(width) bits") }
            try setRefcount(index, v + 1)
        }
    }

    /// Drops one reference to `index` once the tables no longer pointing at it are durable.
    func deferFree(_ index: UInt64) { pendingFrees.append(index) }

    // MARK: Allocation

    /// Allocates `count` contiguous clusters (refcount 1 each), returns the host offset of the first.
    func allocate(_ count: UInt64 = 1) throws -> UInt64 {
        while true {
            // Find a free run.
            var start = max(freeHint, 1)
            var run: UInt64 = 0
            var c = start
            var sawFree = false
            while run < count {
                if try refcount(c) == 0 && !isMetadata(c) {
                    run += 1
                    sawFree = true
                } else {
                    run = 0
                    start = c + 1
                    // Everything below the first free cluster is in use: skip it next time.
                    if !sawFree { freeHint = start }
                }
                c += 1
            }
            // Make sure refcount blocks exist for the run; creating one uses clusters, so retry.
            var created = false
            for idx in start ..< start + count {
                let bi = idx / entriesPerBlock
                if try blockOffset(Int(bi)) == 0 {
                    // The block goes at the run's first cluster (whose own block exists, or
                    // is this one): placing it inside the run's later ranges could split
                    // every candidate run and never finish.
                    if Int(bi) >= table.count { try growTable(toCover: Int(bi)) } else { try createBlock(Int(bi), at: start) }
                    created = true
                    break
                }
            }
            if created { continue }
            for idx in start ..< start + count { try setRefcount(idx, 1) }
            if start == max(freeHint, 1) { freeHint = start + count }
            endCluster = max(endCluster, start + count)
            return start * clusterSize
        }
    }

    /// Makes refcount block `bi` exist at free cluster `place`, whose own refcount
    /// block is either `bi` itself (self-describing) or already exists.
    private func createBlock(_ bi: Int, at place: UInt64) throws {
        let b = RefcountBlock(offset: place * clusterSize, bytes: [UInt8](repeating: 0, count: Int(clusterSize)))
        b.dirty = true
        let own = place / entriesPerBlock == UInt64(bi)
        if own { setValue(in: b, place % entriesPerBlock, 1) }
        try insert(b)
        knownBlocks.insert(b.offset)
        table[bi] = place * clusterSize
        dirtyTableEntries.insert(bi)
        noteMetadata(place)
        endCluster = max(endCluster, place + 1)
        if !own { try setRefcount(place, 1) }
    }

    /// Makes refcount block `bi` exist. The block goes in the first free cluster it
    /// will itself describe when possible (self-describing), else the first free cluster.
    private func createBlock(_ bi: Int, near index: UInt64) throws {
        if bi >= table.count { return try growTable(toCover: bi) }
        let first = UInt64(bi) * entriesPerBlock
        var place = first == 0 ? 1 : first
        while isMetadata(place) { place += 1 }
        let selfDescribing = place < first + entriesPerBlock
        if !selfDescribing {
            place = try allocate(1)
        }
        let b = RefcountBlock(offset: place * clusterSize, bytes: [UInt8](repeating: 0, count: Int(clusterSize)))
        b.dirty = true
        if selfDescribing { setValue(in: b, place - first, 1) }
        try insert(b)
        knownBlocks.insert(b.offset)
        table[bi] = place * clusterSize
        dirtyTableEntries.insert(bi)
        noteMetadata(place)
        endCluster = max(endCluster, place + 1)
    }

    /// Moves the refcount table to a bigger place past every used cluster. Done
    /// write-through with syncs (it is rare): new blocks, new table, header, then the
    /// old table is freed.
    private func growTable(toCover bi: Int) throws {
        try writeDirty()
        try file.sync()
        let perCluster = clusterSize / 8
        let coverageEnd = UInt64(table.count) * entriesPerBlock
        let c0 = max(coverageEnd, endCluster)
        var newEntries = max(UInt64(table.count) * 2, UInt64(bi) + 1)
        var blockCount: UInt64 = 1
        var tableClustersNew: UInt64 = 0
        while true {
            tableClustersNew = (newEntries + perCluster - 1) / perCluster
            let last = c0 + blockCount + tableClustersNew - 1
            let neededBlocks = last / entriesPerBlock - c0 / entriesPerBlock + 1
            let lastBlockIndex = last / entriesPerBlock
            if lastBlockIndex + 1 > newEntries { newEntries = lastBlockIndex + 1; continue }
            if neededBlocks > blockCount { blockCount = neededBlocks; continue }
            break
        }
        guard tableClustersNew * clusterSize <= Qcow2Header.maxRefcountTableBytes else {
            throw StorageError(.outOfBounds, "refcount table would exceed \(Qcow2Header.maxRefcountTableBytes) bytes", path: file.path)
        }
        newEntries = tableClustersNew * perCluster
        // New blocks describe clusters c0 ..< c0 + blockCount + tableClustersNew.
        var newTable = table + [UInt64](repeating: 0, count: Int(newEntries) - table.count)
        let firstBlockIndex = c0 / entriesPerBlock
        var newBlocks: [RefcountBlock] = []
        for k in 0 ..< blockCount {
            let idx = firstBlockIndex + k
            guard newTable[Int(idx)] == 0 else { continue }
            let b = RefcountBlock(offset: (c0 + k) * clusterSize, bytes: [UInt8](repeating: 0, count: Int(clusterSize)))
            newTable[Int(idx)] = b.offset
            newBlocks.append(b)
        }
        let used = c0 ..< c0 + blockCount + tableClustersNew
        for c in used {
            let idx = c / entriesPerBlock
            guard let b = newBlocks.first(where: { $0.offset == newTable[Int(idx)] }) else {
                throw corrupt("refcount table growth: no block for cluster \(c)")
            }
            setValue(in: b, c % entriesPerBlock, 1)
        }
        for b in newBlocks {
            try b.bytes.withUnsafeBytes { try file.write($0, at: b.offset) }
            b.dirty = false
        }
        let newTableOffset = (c0 + blockCount) * clusterSize
        var raw = [UInt8](repeating: 0, count: Int(tableClustersNew * clusterSize))
        for (i, e) in newTable.enumerated() { raw.putBE64(e, at: i * 8) }
        try raw.withUnsafeBytes { try file.write($0, at: newTableOffset) }
        try file.sync()
        try updateHeader(newTableOffset, UInt32(tableClustersNew))
        try file.sync()
        let oldOffset = tableOffset, oldClusters = tableClusters
        table = newTable
        tableOffset = newTableOffset
        tableClusters = tableClustersNew
        dirtyTableEntries.removeAll()
        endCluster = max(endCluster, used.upperBound)
        for b in newBlocks { try insert(b); knownBlocks.insert(b.offset); noteMetadata(b.offset / clusterSize) }
        for c in used { noteMetadata(c) }
        // The old table is garbage now; a crash before this is written only leaks it.
        for k in 0 ..< oldClusters { try adjust(oldOffset / clusterSize + k, by: -1) }
    }

    /// Whether the refcount table range contains `index`.
    func isTableCluster(_ index: UInt64) -> Bool {
        index >= tableOffset / clusterSize && index < tableOffset / clusterSize + tableClusters
    }

    // MARK: Write-back

    var hasDirty: Bool { !dirtyTableEntries.isEmpty || blocks.values.contains(where: \.dirty) }

    /// Writes dirty blocks, then (after a sync, so a table entry never points at an
    /// unwritten block) dirty table entries. Returns whether anything was written.
    @discardableResult
    func writeDirty() throws -> Bool {
        var wrote = false
        for b in blocks.values where b.dirty {
            try b.bytes.withUnsafeBytes { try file.write($0, at: b.offset) }
            b.dirty = false
            wrote = true
        }
        if !dirtyTableEntries.isEmpty {
            if wrote { try file.sync() }
            for i in dirtyTableEntries.sorted() {
                var e = [UInt8](repeating: 0, count: 8)
                e.putBE64(table[i], at: 0)
                try e.withUnsafeBytes { try file.write($0, at: tableOffset + UInt64(i) * 8) }
            }
            dirtyTableEntries.removeAll()
            wrote = true
        }
        return wrote
    }

    /// Applies the deferred frees (in memory); returns the clusters that became free.
    func applyPendingFrees() throws -> [UInt64] {
        let frees = pendingFrees
        pendingFrees.removeAll()
        var freed: [UInt64] = []
        for c in frees {
            try adjust(c, by: -1)
            if try refcount(c) == 0 { freed.append(c) }
        }
        return freed
    }
}
