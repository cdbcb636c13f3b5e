/// The qcow2 file header (cluster 0), parsed and validated, per QEMU's
/// docs/interop/qcow2.txt. Every field is checked before use: the file is hostile.
struct Qcow2Header: Equatable {
    static let magicBytes: [UInt8] = [0x51, 0x46, 0x49, 0xfb] // "QFI\xfb"
    static let magic: UInt32 = 0x5146_49fb
    static let v2Length = 72
    static let v3Length = 104
    /// QEMU's limits: larger tables are refused as absurd (and would exhaust memory).
    static let maxL1Bytes: UInt64 = 32 << 20
    static let maxRefcountTableBytes: UInt64 = 8 << 20
    static let maxVirtualSize: UInt64 = 1 << 55 // host offsets are 56 bits
    /// QEMU's QCOW_MAX_SNAPSHOTS: it refuses to open images claiming more.
    static let maxSnapshots: UInt32 = 65536

    /// Incompatible feature bits.
    enum Incompatible {
        static let dirty: UInt64 = 1 << 0
        static let corrupt: UInt64 = 1 << 1
        static let externalDataFile: UInt64 = 1 << 2
        static let compressionType: UInt64 = 1 << 3
        static let extendedL2: UInt64 = 1 << 4
        static let names: [UInt64: String] = [dirty: "dirty", corrupt: "corrupt", externalDataFile: "external data file",
                                              compressionType: "compression type", extendedL2: "extended L2 entries"]
    }

    /// Compatible feature bits.
    enum Compatible {
        static let lazyRefcounts: UInt64 = 1 << 0
    }

    /// Header extension types.
    enum Extension {
        static let end: UInt32 = 0
        static let backingFormat: UInt32 = 0xE279_2ACA
        static let featureNameTable: UInt32 = 0x6803_F857
        static let bitmaps: UInt32 = 0x2385_2875
        static let encryption: UInt32 = 0x0537_BE77
        static let externalDataFile: UInt32 = 0x4441_5441
    }

    var version: UInt32
    var backingFileOffset: UInt64
    var backingFileSize: UInt32
    var clusterBits: UInt32
    var size: UInt64
    var cryptMethod: UInt32
    var l1Size: UInt32
    var l1TableOffset: UInt64
    var refcountTableOffset: UInt64
    var refcountTableClusters: UInt32
    var nbSnapshots: UInt32
    var snapshotsOffset: UInt64
    var incompatibleFeatures: UInt64 = 0
    var compatibleFeatures: UInt64 = 0
    var autoclearFeatures: UInt64 = 0
    var refcountOrder: UInt32 = 4
    var headerLength: UInt32
    var compressionType: UInt8 = 0

    // From the header extensions and the backing file name field.
    var backingFile: String?
    var backingFormat: String?
    /// Names of feature bits from the feature name table: (type, bit) → name.
    var featureNames: [String: String] = [:]

    var clusterSize: UInt64 { 1 << UInt64(clusterBits) }
    var l2Entries: UInt64 { clusterSize / 8 }

    /// Parses and validates cluster 0 of an image whose file is `fileSize` bytes long.
    /// `bytes` holds the start of the file (at least the first cluster, when the file has one).
    static func parse(_ bytes: [UInt8], fileSize: UInt64, path: String) throws -> Qcow2Header {
        func bad(_ why: String) -> StorageError { StorageError(.invalidFormat, why, path: path) }
        func corrupt(_ why: String) -> StorageError { StorageError(.corruptImage, why, path: path) }
        guard bytes.count >= v2Length else { throw bad("file is too short for a qcow2 header (\(bytes.count) bytes)") }
        guard bytes.be32(0) == magic else { throw bad("no qcow2 magic") }
        let version = bytes.be32(4)
        guard version == 2 || version == 3 else {
            throw StorageError(.unsupportedFeature, "qcow2 version \(version) (only 2 and 3 exist)", path: path)
        }
        var h = Qcow2Header(
            version: version, backingFileOffset: bytes.be64(8), backingFileSize: bytes.be32(16),
            clusterBits: bytes.be32(20), size: bytes.be64(24), cryptMethod: bytes.be32(32),
            l1Size: bytes.be32(36), l1TableOffset: bytes.be64(40), refcountTableOffset: bytes.be64(48),
            refcountTableClusters: bytes.be32(56), nbSnapshots: bytes.be32(60), snapshotsOffset: bytes.be64(64),
            headerLength: UInt32(v2Length))
        guard (9 ... 21).contains(h.clusterBits) else { throw bad("cluster_bits \(h.clusterBits) is outside 9...21") }
        let cs = h.clusterSize
        if version == 3 {
            guard bytes.count >= v3Length else { throw bad("file is too short for a version 3 header") }
            h.incompatibleFeatures = bytes.be64(72)
            h.compatibleFeatures = bytes.be64(80)
            h.autoclearFeatures = bytes.be64(88)
            h.refcountOrder = bytes.be32(96)
            h.headerLength = bytes.be32(100)
            guard h.headerLength >= v3Length, h.headerLength % 8 == 0, UInt64(h.headerLength) <= cs,
                  Int(h.headerLength) <= bytes.count else {
                throw bad("header_length \(h.headerLength) is invalid")
            }
            if h.headerLength > 104 { h.compressionType = bytes[104] }
        }
        guard h.refcountOrder <= 6 else { throw bad("refcount_order \(h.refcountOrder) is above 6") }
        guard h.cryptMethod == 0 else {
            throw StorageError(.unsupportedFeature, "encrypted images (crypt_method \(h.cryptMethod))", path: path)
        }
        guard h.size <= maxVirtualSize else { throw bad("virtual size \(h.size) is absurd") }

        // Header extensions, between the header and the backing file name (or the end of cluster 0).
        var pos = Int(h.headerLength)
        let extEnd = Int(min(cs, UInt64(bytes.count)))
        if version == 3 {
            while pos + 8 <= extEnd {
                let type = bytes.be32(pos), length = Int(bytes.be32(pos + 4))
                pos += 8
                if type == Extension.end { break }
                guard length <= extEnd - pos else { throw bad("header extension 0x\(String(type, radix: 16)) runs past cluster 0") }
                let data = Array(bytes[pos ..< pos + length])
                switch type {
                case Extension.backingFormat:
                    h.backingFormat = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
                case Extension.featureNameTable:
                    var i = 0
                    while i + 48 <= data.count {
                        let name = String(decoding: data[i + 2 ..< i + 48].prefix { $0 != 0 }, as: UTF8.self)
                        h.featureNames["\(data[i]):\(data[i + 1])"] = name
                        i += 48
                    }
                case Extension.externalDataFile:
                    throw StorageError(.unsupportedFeature, "external data files", path: path)
                case Extension.encryption:
                    throw StorageError(.unsupportedFeature, "encrypted images", path: path)
                default:
                    break // unknown extensions are optional by definition; we never rewrite them
                }
                pos += (length + 7) & ~7
            }
        }

        // Incompatible features: anything we do not implement is refused, never ignored.
        let known = Incompatible.dirty | Incompatible.corrupt | Incompatible.compressionType
        let unknown = h.incompatibleFeatures & ~known
        if unknown != 0 {
            var names: [String] = []
            for bit in 0 ..< 64 where unknown & (1 << UInt64(bit)) != 0 {
                names.append(Incompatible.names[1 << UInt64(bit)] ?? h.featureNames["0:\(bit)"] ?? "bit \(bit)")
            }
            throw StorageError(.unsupportedFeature, "incompatible qcow2 features: \(names.joined(separator: ", "))", path: path)
        }
        if h.incompatibleFeatures & Incompatible.compressionType != 0 || h.compressionType != 0 {
            guard h.compressionType == 0 else {
                throw StorageError(.unsupportedFeature, "compression type \(h.compressionType) (only zlib)", path: path)
            }
        }

        // Backing file name.
        if h.backingFileOffset != 0 {
            guard h.backingFileSize > 0, h.backingFileSize <= 1023,
                  let end = h.backingFileOffset.adding(UInt64(h.backingFileSize)), end <= cs, end <= UInt64(bytes.count) else {
                throw bad("backing file name (offset \(h.backingFileOffset), \(h.backingFileSize) bytes) is not inside cluster 0")
            }
            h.backingFile = String(decoding: bytes[Int(h.backingFileOffset) ..< Int(end)], as: UTF8.self)
        }

        // Tables: aligned, inside the file, not over the header, of sane size.
        let fileClusters = fileSize.alignedUp(cs) ?? fileSize
        let needL1 = (h.size + cs * h.l2Entries - 1) / (cs * h.l2Entries)
        guard UInt64(h.l1Size) >= needL1 else { throw corrupt("L1 table (\(h.l1Size) entries) is too small for a \(h.size)-byte disk") }
        guard UInt64(h.l1Size) * 8 <= maxL1Bytes else { throw bad("L1 table of \(h.l1Size) entries is absurd") }
        if h.l1Size > 0 {
            guard h.l1TableOffset % cs == 0, h.l1TableOffset != 0 else { throw corrupt("L1 table offset \(h.l1TableOffset) is not a cluster boundary past the header") }
            guard let end = h.l1TableOffset.adding(UInt64(h.l1Size) * 8), end <= fileClusters else {
                throw corrupt("L1 table at \(h.l1TableOffset) lies outside the \(fileSize)-byte file")
            }
        }
        guard h.refcountTableClusters > 0, UInt64(h.refcountTableClusters) * cs <= maxRefcountTableBytes else {
            throw bad("refcount table of \(h.refcountTableClusters) clusters is absurd")
        }
        guard h.refcountTableOffset % cs == 0, h.refcountTableOffset != 0 else {
            throw corrupt("refcount table offset \(h.refcountTableOffset) is not a cluster boundary past the header")
        }
        guard let rtEnd = h.refcountTableOffset.adding(UInt64(h.refcountTableClusters) * cs), rtEnd <= fileClusters else {
            throw corrupt("refcount table at \(h.refcountTableOffset) lies outside the \(fileSize)-byte file")
        }
        if h.l1Size > 0 {
            let l1End = h.l1TableOffset + UInt64(h.l1Size) * 8
            if h.l1TableOffset < rtEnd && h.refcountTableOffset < l1End {
                throw corrupt("L1 table and refcount table overlap")
            }
        }
        guard h.nbSnapshots <= maxSnapshots else {
            throw bad("\(h.nbSnapshots) snapshots (at most \(maxSnapshots), as QEMU)")
        }
        if h.nbSnapshots > 0 {
            guard h.snapshotsOffset % cs == 0, h.snapshotsOffset != 0, h.snapshotsOffset < fileClusters else {
                throw corrupt("snapshot table offset \(h.snapshotsOffset) is invalid")
            }
        }
        return h
    }

    /// The fixed header fields serialized (72 or `headerLength` bytes).
    func serialized() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: Int(headerLength))
        b.putBE32(Qcow2Header.magic, at: 0)
        b.putBE32(version, at: 4)
        b.putBE64(backingFileOffset, at: 8)
        b.putBE32(backingFileSize, at: 16)
        b.putBE32(clusterBits, at: 20)
        b.putBE64(size, at: 24)
        b.putBE32(cryptMethod, at: 32)
        b.putBE32(l1Size, at: 36)
        b.putBE64(l1TableOffset, at: 40)
        b.putBE64(refcountTableOffset, at: 48)
        b.putBE32(refcountTableClusters, at: 56)
        b.putBE32(nbSnapshots, at: 60)
        b.putBE64(snapshotsOffset, at: 64)
        if version >= 3 {
            b.putBE64(incompatibleFeatures, at: 72)
            b.putBE64(compatibleFeatures, at: 80)
            b.putBE64(autoclearFeatures, at: 88)
            b.putBE32(refcountOrder, at: 96)
            b.putBE32(headerLength, at: 100)
            if headerLength > 104 { b[104] = compressionType }
        }
        return b
    }
}
