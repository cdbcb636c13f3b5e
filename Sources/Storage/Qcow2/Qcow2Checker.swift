/// What `check` found, counted and worded like `qemu-img check`.
public struct ImageCheckReport: Sendable {
    /// Metadata errors (a reference with too low a refcount, entries out of the file…).
    public var corruptions = 0
    /// Clusters whose refcount is higher than their references (wasted space only).
    public var leaks = 0
    /// One line per problem, e.g. `Leaked cluster 9 refcount=1 reference=0`.
    public var messages: [String] = []
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

extension Qcow2Image {
    /// Recomputes every cluster's references from the metadata on disk (header,
    /// L1/L2 tables, refcount structures, snapshot tables) and compares them with
    /// the stored refcounts. Flushes first when the image is writable.
    public func check() throws -> ImageCheckReport {
        if !isReadOnly { try flush() }
        var r = ImageCheckReport()
        let cs = clusterSize
        let fileSize = try file.size()
        let fileClusters = (fileSize + cs - 1) / cs
        var refs = [UInt32](repeating: 0, count: Int(fileClusters))
        let h = header

        func error(_ s: String) { r.corruptions += 1; r.messages.append("ERROR " + s) }
        /// Counts one reference to each cluster of `offset ..< offset+length`.
        func ref(_ offset: UInt64, _ length: UInt64, _ what: String) {
            guard length > 0 else { return }
            guard let end = offset.adding(length), (end - 1) / cs < fileClusters else {
                error("\(what) offset=0x\(String(offset, radix: 16)) is outside the image (end \(fileSize))")
                return
            }
            for c in offset / cs ... (end - 1) / cs { refs[Int(c)] &+= 1 }
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
            for i in 0 ..< h.nbSnapshots {
                var fixed = [UInt8](repeating: 0, count: 40)
                try fixed.withUnsafeMutableBytes { try file.read(into: $0, at: pos) }
                let l1Off = fixed.be64(0), l1Size = fixed.be32(8)
                let idLen = UInt64(fixed.be16(12)), nameLen = UInt64(fixed.be16(14)), extra = UInt64(fixed.be32(36))
                guard extra < 1 << 16, l1Size <= UInt32(Qcow2Header.maxL1Bytes / 8) else {
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
        // Compare.
        let coverage = UInt64(table.count) * refcounts.entriesPerBlock
        let limit = min(max(fileClusters, 0), coverage)
        for c in 0 ..< max(fileClusters, limit) {
            let expected = c < fileClusters ? UInt64(refs[Int(c)]) : 0
            let stored: UInt64
            do { stored = try refcounts.refcount(c) } catch let e as StorageError {
                if expected > 0 { error("cannot read refcount of cluster \(c): \(e.context)") }
                continue
            }
            if stored < expected {
                error("cluster \(c) refcount=\(stored) reference=\(expected)")
            } else if stored > expected {
                r.leaks += 1
                r.messages.append("Leaked cluster \(c) refcount=\(stored) reference=\(expected)")
            }
        }
        for (c, copied, what) in copiedChecks {
            let stored = (try? refcounts.refcount(c)) ?? 0
            if copied != (stored == 1) && stored != 0 {
                error("OFLAG_COPIED \(what) refcount=\(stored)")
            }
        }
        r.totalClusters = (h.size + cs - 1) / cs
        var end: UInt64 = 0
        for c in (0 ..< fileClusters).reversed() where refs[Int(c)] > 0 { end = (c + 1) * cs; break }
        r.imageEndOffset = max(end, fileSize)
        return r
    }
}
