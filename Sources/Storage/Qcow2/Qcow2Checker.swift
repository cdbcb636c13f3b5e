/// What `check` found, counted and worded like `qemu-img check`.
public struct ImageCheckReport: Sendable {
    /// Metadata errors (a reference with too low a refcount, entries out of the file…).
    public var corruptions = 0
    /// Clusters whose refcount is higher than their references (wasted space only).
    public var leaks = 0
    /// One line per problem, e.g. `Leaked cluster 9 refcount=1 reference=0`; at most
    /// `maxMessages` (a hostile image can have billions), the rest only counted.
    public var messages: [String] = []
    public var messagesOmitted = 0
    static let maxMessages = 10_000
    public var allocatedClusters: UInt64 = 0
    public var totalClusters: UInt64 = 0
    public var fragmentedClusters: UInt64 = 0
    public var compressedClusters: UInt64 = 0
    /// One past the last byte in use.
    public var imageEndOffset: UInt64 = 0

    /// Exit status with `qemu-img check`'s meaning: 0 clean, 2 corrupt, 3 leaks only.
    public var exitCode: Int32 { corruptions > 0 ? 2 : leaks > 0 ? 3 : 0 }

    /// The report as `qemu-img check` prints it.
    public var formatted: String {
        var out = messages.map { $0 + "\n" }.joined()
        if messagesOmitted > 0 { out += "(\(messagesOmitted) more problems not listed)\n" }
        if !messages.isEmpty { out += "\n" }
        if corruptions == 0 && leaks == 0 { out += "No errors were found on the image.\n" }
        if corruptions > 0 {
            out += "\(corruptions) errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n"
        }
        if leaks > 0 {
            if corruptions > 0 { out += "\n" }
            out += "\(leaks) leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n"
        }
        func pct(_ n: UInt64) -> String {
            guard totalClusters > 0 else { return "0.00" }
            let v = Double(n) * 100 / Double(totalClusters)
            let hundredths = Int((v * 100).rounded())
            return "\(hundredths / 100).\(String(hundredths % 100).leftPadded(2))"
        }
        out += "\(allocatedClusters)/\(totalClusters) = \(pct(allocatedClusters))% allocated, \(pct(fragmentedClusters))% fragmented, \(pct(compressedClusters))% compressed clusters\n"
        out += "Image end offset: \(imageEndOffset)\n"
        return out
    }
}

extension String {
    fileprivate func leftPadded(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}

extension ImageCheckReport {
    mutating func note(_ message: String) {
        if messages.count < Self.maxMessages { messages.append(message) } else { messagesOmitted += 1 }
    }
}

extension Qcow2Image {
    /// QEMU's limits for `check`: it refuses files of more than INT_MAX clusters
    /// (qcow2_check_refcounts) and snapshot tables over QCOW_MAX_SNAPSHOTS_SIZE.
    static let maxCheckClusters = UInt64(Int32.max)
    static let maxSnapshotTableBytes: UInt64 = 1024 * UInt64(Qcow2Header.maxSnapshots)
    static let maxSnapshotExtraData: UInt64 = 1024

    /// Recomputes every cluster's references from the metadata on disk (header,
    /// L1/L2 tables, refcount structures, snapshot tables) and compares them with
    /// the stored refcounts. Flushes first when the image is writable.
    public func check() throws -> ImageCheckReport {
        if !isReadOnly { try flush() }
        var r = ImageCheckReport()
        let cs = clusterSize
        let fileSize = try file.size()
        let fileClusters = (fileSize + cs - 1) / cs
        guard fileClusters <= Self.maxCheckClusters else {
            throw StorageError(.unsupportedFeature,
                "image file of \(fileClusters) clusters is too large to check (at most \(Self.maxCheckClusters), as qemu-img)", path: path)
        }
        // Sparse: the file length costs nothing to fake, so memory follows the references.
        var refs = ClusterReferences()
        let h = header

        func error(_ s: String) { r.corruptions += 1; r.note("ERROR " + s) }
        /// Counts one reference to each cluster of `offset ..< offset+length`.
        func ref(_ offset: UInt64, _ length: UInt64, _ what: String) {
            guard length > 0 else { return }
            guard let end = offset.adding(length), (end - 1) / cs < fileClusters else {
                error("\(what) offset=0x\(String(offset, radix: 16)) is outside the image (end \(fileSize))")
                return
            }
            for c in offset / cs ... (end - 1) / cs { refs.add(c) }
        }
        func readTable(_ offset: UInt64, entries: Int) throws -> [UInt64] {
            var raw = [UInt8](repeating: 0, count: entries * 8)
            try raw.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
            return (0 ..< entries).map { raw.be64($0 * 8) }
        }

        ref(0, cs, "header")
        // Active L1 table and, for internal snapshots, theirs.
        var l1Tables: [(offset: UInt64, size: UInt32, active: Bool)] = [(h.l1TableOffset, h.l1Size, true)]
        if h.nbSnapshots > 0 {
            var pos = h.snapshotsOffset
            var start = pos
            // nb_snapshots is capped by the header parser; the table's bytes are capped here.
            for i in 0 ..< h.nbSnapshots {
                guard pos - h.snapshotsOffset <= Self.maxSnapshotTableBytes, pos < fileSize else {
                    error("snapshot table (\(h.nbSnapshots) entries at 0x\(String(h.snapshotsOffset, radix: 16))) is too big or runs past the end of the file")
                    break
                }
                var fixed = [UInt8](repeating: 0, count: 40)
                try fixed.withUnsafeMutableBytes { try file.read(into: $0, at: pos) }
                let l1Off = fixed.be64(0), l1Size = fixed.be32(8)
                let idLen = UInt64(fixed.be16(12)), nameLen = UInt64(fixed.be16(14)), extra = UInt64(fixed.be32(36))
                guard extra <= Self.maxSnapshotExtraData, l1Size <= UInt32(Qcow2Header.maxL1Bytes / 8) else {
                    error("snapshot \(i) has an invalid table entry"); break
                }
                l1Tables.append((l1Off, l1Size, false))
                pos += ((40 + extra + idLen + nameLen) + 7) & ~7
                if i == 0 { start = h.snapshotsOffset }
            }
            ref(start, pos - start, "snapshot table")
        }
        var copiedChecks: [(cluster: UInt64, copied: Bool, what: String)] = []
        var lastData: UInt64?
        for table in l1Tables {
            guard table.offset % cs == 0 else { error("L1 table offset=0x\(String(table.offset, radix: 16)) is not aligned"); continue }
            ref(table.offset, UInt64(table.size) * 8, "L1 table")
            guard let end = table.offset.adding(UInt64(table.size) * 8), end <= fileSize || table.size == 0 else { continue }
            let l1 = try readTable(table.offset, entries: Int(table.size))
            for (i, e) in l1.enumerated() where e != 0 {
                let off = e & Qcow2Entry.offsetMask
                if e & Qcow2Entry.l1Reserved != 0 { error("L1 entry \(i) has reserved bits set: 0x\(String(e, radix: 16))"); continue }
                if off == 0 { continue }
                guard off % cs == 0 else { error("L2 table offset=0x\(String(off, radix: 16)) is not aligned (l1 index \(i))"); continue }
                ref(off, cs, "L2 table")
                if table.active { copiedChecks.append((off / cs, e & Qcow2Entry.copied != 0, "L2 cluster: l1_index=\(i) l1_entry=\(String(e, radix: 16))")) }
                guard off / cs < fileClusters else { continue }
                let l2 = try readTable(off, entries: Int(cs / 8))
                for (j, entry) in l2.enumerated() where entry != 0 {
                    let g = UInt64(i) * (cs / 8) + UInt64(j)
                    let m: ClusterMapping
                    do {
                        m = try ClusterMapping.decode(entry, clusterBits: h.clusterBits, version: h.version)
                    } catch let e as StorageError {
                        error("\(e.context) (guest cluster \(g))"); continue
                    }
                    switch m {
                    case .data(let host, let copied):
                        ref(host, cs, "data cluster")
                        if table.active {
                            r.allocatedClusters += 1
                            if let last = lastData, last + cs != host { r.fragmentedClusters += 1 }
                            lastData = host
                            copiedChecks.append((host / cs, copied, "data cluster: l2_entry=\(String(entry, radix: 16))"))
                        }
                    case .zero(let host?, let copied):
                        ref(host, cs, "preallocated zero cluster")
                        if table.active { copiedChecks.append((host / cs, copied, "data cluster: l2_entry=\(String(entry, radix: 16))")) }
                    case .compressed(let host, let length):
                        ref(host, length, "compressed cluster")
                        if table.active { r.allocatedClusters += 1; r.compressedClusters += 1 }
                    default: break
                    }
                }
            }
        }
        // Refcount structures.
        ref(h.refcountTableOffset, UInt64(h.refcountTableClusters) * cs, "refcount table")
        let table = refcounts.table
        for (i, e) in table.enumerated() where e != 0 {
            let off = e & Qcow2Entry.refcountTableOffsetMask
            guard e & ~Qcow2Entry.refcountTableOffsetMask == 0, off % cs == 0 else {
                error("refcount table entry \(i) is invalid: 0x\(String(e, radix: 16))"); continue
            }
            ref(off, cs, "refcount block")
        }
        // Compare, in ascending cluster order, only where a difference can be: clusters
        // a refcount block describes (no other cluster has a stored refcount) and
        // clusters with references. Both are bounded by the capped metadata, not by
        // the file's (possibly sparse, hostile) length.
        func compare(_ c: UInt64) {
            let expected = UInt64(refs.count(c))
            let stored: UInt64
            do { stored = try refcounts.refcount(c) } catch let e as StorageError {
                if expected > 0 { error("cannot read refcount of cluster \(c): \(e.context)") }
                return
            } catch { return }
            if stored < expected {
                error("cluster \(c) refcount=\(stored) reference=\(expected)")
            } else if stored > expected {
                r.leaks += 1
                r.note("Leaked cluster \(c) refcount=\(stored) reference=\(expected)")
            }
        }
        let perBlock = refcounts.entriesPerBlock
        func described(_ c: UInt64) -> Bool { c / perBlock < UInt64(table.count) && table[Int(c / perBlock)] != 0 }
        var undescribed: [UInt64] = []
        refs.forEachReferenced { c in if c < fileClusters && !described(c) { undescribed.append(c) } }
        var next = 0
        for (i, e) in table.enumerated() where e != 0 {
            let first = UInt64(i) * perBlock
            guard first < fileClusters else { break }
            while next < undescribed.count, undescribed[next] < first { compare(undescribed[next]); next += 1 }
            for c in first ..< min(first + perBlock, fileClusters) { compare(c) }
        }
        for c in undescribed[next...] { compare(c) }
        for (c, copied, what) in copiedChecks {
            let stored = (try? refcounts.refcount(c)) ?? 0
            if copied != (stored == 1) && stored != 0 {
                error("OFLAG_COPIED \(what) refcount=\(stored)")
            }
        }
        r.totalClusters = (h.size + cs - 1) / cs
        let end = refs.highest.map { ($0 + 1) * cs } ?? 0
        r.imageEndOffset = max(end, fileSize)
        return r
    }
}
