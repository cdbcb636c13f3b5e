/// L1 and L2 table entries: bit layouts from qcow2.txt, decoded with every
/// reserved bit checked (a set reserved bit means a corrupt or unsupported image).
enum Qcow2Entry {
    static let copied: UInt64 = 1 << 63
    static let compressed: UInt64 = 1 << 62
    static let zeroFlag: UInt64 = 1
    /// Bits 9–55: a cluster-aligned host offset.
    static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00
    static let l1Reserved: UInt64 = 0x7F00_0000_0000_01FF
    static let l2Reserved: UInt64 = 0x3F00_0000_0000_01FE
    /// Refcount table entries: bits 9–63 offset, 0–8 reserved.
    static let refcountTableOffsetMask: UInt64 = 0xFFFF_FFFF_FFFF_FE00
}

/// What one L2 entry says about a guest cluster.
enum ClusterMapping: Equatable {
    /// Not allocated: reads fall through to the backing file, or zeroes.
    case unallocated
    /// Reads as zeroes; `preallocated` is a host cluster kept for later writes.
    case zero(preallocated: UInt64?, copied: Bool)
    /// Plain data at a cluster-aligned host offset; `copied` = refcount is exactly 1.
    case data(host: UInt64, copied: Bool)
    /// zlib-deflated data of `length` bytes starting at byte `host`.
    case compressed(host: UInt64, length: UInt64)

    /// Decodes an L2 entry of an image with `clusterBits`-sized clusters.
    static func decode(_ entry: UInt64, clusterBits: UInt32, version: UInt32) throws -> ClusterMapping {
        let copied = entry & Qcow2Entry.copied != 0
        if entry & Qcow2Entry.compressed != 0 {
            // Bits 0..x-1 host byte offset, x..61 additional 512-byte sectors, x = 62 - (cluster_bits - 8).
            let x = 62 - (UInt64(clusterBits) - 8)
            let host = entry & ((1 << x) - 1)
            let sectors = (entry >> x) & ((1 << (62 - x)) - 1)
            let length = (sectors + 1) * 512 - (host & 511)
            guard !copied else { throw StorageError(.corruptImage, "compressed L2 entry 0x\(String(entry, radix: 16)) has the copied flag") }
            return .compressed(host: host, length: length)
        }
        guard entry & Qcow2Entry.l2Reserved == 0 else {
            throw StorageError(.corruptImage, "L2 entry 0x\(String(entry, radix: 16)) has reserved bits set")
        }
        let host = entry & Qcow2Entry.offsetMask
        guard host & ((1 << UInt64(clusterBits)) - 1) == 0 else {
            throw StorageError(.corruptImage, "L2 entry 0x\(String(entry, radix: 16)) is not cluster aligned")
        }
        if entry & Qcow2Entry.zeroFlag != 0 {
            guard version >= 3 else { throw StorageError(.corruptImage, "zero flag in a version 2 image") }
            return .zero(preallocated: host == 0 ? nil : host, copied: copied)
        }
        if host == 0 { return .unallocated }
        return .data(host: host, copied: copied)
    }
}
