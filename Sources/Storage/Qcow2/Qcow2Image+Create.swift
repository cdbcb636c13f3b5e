extension Qcow2Image {
    /// Options for a new qcow2 image.
    public struct CreateOptions: Sendable {
        public var clusterSize: UInt64 = 65536
        /// 3 (default) or 2.
        public var version: UInt32 = 3
        /// Refcount width is 1 << refcountOrder bits (0...6; default 16-bit).
        public var refcountOrder: UInt32 = 4
        /// Backing file name as it will be stored (relative names are relative to the new image).
        public var backingFile: String?
        /// Backing file format; detected from the file when nil.
        public var backingFormat: DiskFormat?
        public init() {}
    }

    /// Creates a qcow2 image at `path` (which must not exist). `virtualSize` nil
    /// takes the backing file's size. Layout: header, refcount table, refcount
    /// block(s), L1 table, each starting a cluster.
    public static func create(path: String, virtualSize: UInt64? = nil, options: CreateOptions = CreateOptions()) throws {
        let cs = options.clusterSize
        guard cs >= 512, cs <= 2 << 20, cs & (cs - 1) == 0 else {
            throw StorageError(.invalidArgument, "cluster size \(cs) must be a power of two from 512 to 2M")
        }
        guard options.version == 2 || options.version == 3 else {
            throw StorageError(.invalidArgument, "qcow2 version \(options.version) (2 or 3)")
        }
        guard options.refcountOrder <= 6, options.version == 3 || options.refcountOrder == 4 else {
            throw StorageError(.invalidArgument, "refcount order \(options.refcountOrder)")
        }
        var backingFormat = options.backingFormat
        var size = virtualSize
        if let name = options.backingFile {
            guard !name.isEmpty, name.utf8.count <= 1023 else { throw StorageError(.invalidArgument, "backing file name is empty or too long") }
            let resolved = BackingChain.resolve(name, relativeTo: path)
            let base = try DiskImageOpener.openBacking(name: resolved, format: backingFormat?.rawValue, of: path,
                                                       chain: BackingChain())
            backingFormat = base.format
            if size == nil { size = base.virtualSize }
            try base.close()
        }
        guard var size else { throw StorageError(.invalidArgument, "a size is needed (no backing file to take it from)") }
        // Whole sectors, as qemu-img does (checked: the size comes from the command line).
        guard let sectors = size.alignedUp(512), sectors <= Qcow2Header.maxVirtualSize else {
            throw StorageError(.invalidArgument, "size \(size) is too large")
        }
        size = sectors
        guard size <= Qcow2Header.maxVirtualSize else { throw StorageError(.invalidArgument, "size \(size) is too large") }
        let bits = UInt32(cs.trailingZeroBitCount)
        let l2Entries = cs / 8
        let l1Size = (size + cs * l2Entries - 1) / (cs * l2Entries)
        guard l1Size * 8 <= Qcow2Header.maxL1Bytes else { throw StorageError(.invalidArgument, "size \(size) needs too large an L1 table for \(cs)-byte clusters") }
        let l1Clusters = max(1, (l1Size * 8 + cs - 1) / cs)
        let entriesPerBlock = cs * 8 / (1 << UInt64(options.refcountOrder))
        // Solve for refcount blocks/table covering header + table + blocks + L1.
        var blocks: UInt64 = 1, tableClusters: UInt64 = 1
        while true {
            let total = 1 + tableClusters + blocks + l1Clusters
            let b = (total + entriesPerBlock - 1) / entriesPerBlock
            let t = (b * 8 + cs - 1) / cs
            if b == blocks && t == tableClusters { break }
            blocks = b; tableClusters = t
        }
        let tableOffset = cs
        let blocksOffset = tableOffset + tableClusters * cs
        let l1Offset = blocksOffset + blocks * cs
        let total = 1 + tableClusters + blocks + l1Clusters

        var h = Qcow2Header(version: options.version, backingFileOffset: 0, backingFileSize: 0, clusterBits: bits, size: size,
                            cryptMethod: 0, l1Size: UInt32(l1Size), l1TableOffset: l1Offset, refcountTableOffset: tableOffset,
                            refcountTableClusters: UInt32(tableClusters), nbSnapshots: 0, snapshotsOffset: 0,
                            refcountOrder: options.refcountOrder,
                            headerLength: UInt32(options.version == 3 ? 112 : Qcow2Header.v2Length))
        var cluster0 = h.serialized()
        if options.version == 3, let fmt = backingFormat {
            // Backing format extension, so the base is never probed.
            let name = Array(fmt.rawValue.utf8)
            var ext = [UInt8](repeating: 0, count: 8 + (name.count + 7) / 8 * 8)
            ext.putBE32(Qcow2Header.Extension.backingFormat, at: 0)
            ext.putBE32(UInt32(name.count), at: 4)
            ext.replaceSubrange(8 ..< 8 + name.count, with: name)
            cluster0 += ext
        }
        if options.version == 3 { cluster0 += [UInt8](repeating: 0, count: 8) } // end of extensions
        if let name = options.backingFile {
            h.backingFileOffset = UInt64(cluster0.count)
            h.backingFileSize = UInt32(name.utf8.count)
            cluster0 += Array(name.utf8)
            cluster0.replaceSubrange(0 ..< Int(h.headerLength), with: h.serialized())
        }
        guard UInt64(cluster0.count) <= cs else { throw StorageError(.invalidArgument, "header does not fit a \(cs)-byte cluster") }
        cluster0 += [UInt8](repeating: 0, count: Int(cs) - cluster0.count)

        var table = [UInt8](repeating: 0, count: Int(tableClusters * cs))
        for i in 0 ..< blocks { table.putBE64(blocksOffset + i * cs, at: Int(i) * 8) }
        var blockBytes = [UInt8](repeating: 0, count: Int(blocks * cs))
        let width = Int(1 << options.refcountOrder)
        for c in 0 ..< Int(total) {
            // Refcount 1, at any width: set the lowest bit of the entry (big-endian for ≥ 8 bits).
            if width >= 8 {
                blockBytes[(c + 1) * width / 8 - 1] = 1
            } else {
                let perByte = 8 / width
                blockBytes[c / perByte] |= 1 << UInt8((c % perByte) * width)
            }
        }
        let file = try ImageFile.open(path, readOnly: false, create: true)
        do {
            try cluster0.withUnsafeBytes { try file.write($0, at: 0) }
            try table.withUnsafeBytes { try file.write($0, at: tableOffset) }
            try blockBytes.withUnsafeBytes { try file.write($0, at: blocksOffset) }
            try file.truncate(to: l1Offset + l1Clusters * cs) // L1 table: zeroes
            try file.sync()
        } catch {
            unlink(path)
            throw error
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
