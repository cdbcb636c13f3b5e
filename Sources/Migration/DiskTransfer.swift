import FoundationEssentials

/// The payload of a `disk` frame: one run of a disk's guest clusters, sent
/// without shared storage (docs/migration.md, "Disks without shared storage").
///
///     offset  size  field
///          0     8  byte offset in the virtual disk (a multiple of the disk's cluster size)
///          8     4  length in bytes (> 0; whole clusters, or up to the disk's end)
///         12     2  disk index (the disk's order among the VM's disks)
///         14     2  encoding: 0 = the bytes follow, 1 = reads as zeros (nothing follows)
///         16     …  length bytes (encoding 0 only)
public struct DiskRun: Equatable, Sendable {
    public static let headerSize = 16
    /// Data per run: one cluster of the largest qcow2 cluster size (2 MiB).
    public static let maxDataBytes: UInt32 = 2 << 20

    public enum Encoding: UInt16, Sendable { case data = 0, zero = 1 }

    public var offset: UInt64
    public var length: UInt32
    public var disk: UInt16
    public var encoding: Encoding

    public init(offset: UInt64, length: UInt32, disk: UInt16, encoding: Encoding) {
        self.offset = offset
        self.length = length
        self.disk = disk
        self.encoding = encoding
    }

    public var frameLength: UInt64 { UInt64(Self.headerSize) + (encoding == .data ? UInt64(length) : 0) }

    public func header() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.headerSize)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: offset.littleEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: disk.littleEndian, toByteOffset: 12, as: UInt16.self)
            raw.storeBytes(of: encoding.rawValue.littleEndian, toByteOffset: 14, as: UInt16.self)
        }
        return bytes
    }

    /// Parses a run header against its frame's length: a known encoding, a
    /// non-zero length, data within the limit, and a frame that is exactly the
    /// run. Where it lies on the disk is the receiver's check (it knows the disks).
    public static func parse(_ bytes: [UInt8], frameLength: UInt64) throws -> DiskRun {
        guard bytes.count == headerSize, frameLength >= UInt64(headerSize) else {
            throw MigrationError(.malformed, "disk message of \(frameLength) bytes, shorter than its run header")
        }
        let (offset, length, disk, rawEncoding) = bytes.withUnsafeBytes { raw in
            (UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
             UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt16.self)),
             UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 14, as: UInt16.self)))
        }
        guard let encoding = Encoding(rawValue: rawEncoding) else {
            throw MigrationError(.malformed, "disk run with unknown encoding \(rawEncoding)")
        }
        guard length > 0, encoding == .zero || length <= maxDataBytes else {
            throw MigrationError(.malformed, "disk run of \(length) bytes (data runs hold 1...\(maxDataBytes))")
        }
        let run = DiskRun(offset: offset, length: length, disk: disk, encoding: encoding)
        guard run.frameLength == frameLength else {
            throw MigrationError(.malformed, "disk run of \(length) \(encoding == .zero ? "zero" : "data") bytes "
                + "in a \(frameLength)-byte message (expected \(run.frameLength))")
        }
        return run
    }

    /// The receiver's placement rule: inside a disk of `virtualSize` bytes, without
    /// overflow, starting on a cluster and covering whole clusters (the last one
    /// may end with the disk).
    public func check(virtualSize: UInt64, clusterSize: UInt64) throws {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(length))
        guard !overflow, end <= virtualSize else {
            throw MigrationError(.malformed, "disk \(disk) run at \(offset)+\(length) is outside the \(virtualSize)-byte disk")
        }
        guard offset % clusterSize == 0, UInt64(length) % clusterSize == 0 || end == virtualSize else {
            throw MigrationError(.malformed, "disk \(disk) run at \(offset)+\(length) is not whole \(clusterSize)-byte clusters")
        }
    }
}

/// The `diskPlan` payload: for each of the VM's disks, in order, whether the
/// destination opens the same file (0, shared storage) or receives its top
/// layer into a new overlay of its own (1).
public struct MigrationDiskPlan: Equatable, Sendable {
    public static let maxDisks = 64
    public var copied: [Bool]

    public init(copied: [Bool]) { self.copied = copied }

    public var bytes: [UInt8] { copied.map { $0 ? 1 : 0 } }

    /// Parses the plan for a VM with `disks` disks.
    public static func parse(_ bytes: [UInt8], disks: Int) throws -> MigrationDiskPlan {
        guard bytes.count == disks, bytes.allSatisfy({ $0 <= 1 }) else {
            throw MigrationError(.malformed, "a disk plan of \(bytes.count) byte(s) for \(disks) disk(s)")
        }
        return MigrationDiskPlan(copied: bytes.map { $0 == 1 })
    }
}

/// The `disks` payload (JSON): each disk the destination receives, described
/// by the source so the destination can check, before any transfer, that it
/// holds the same backing chain, and create the overlay the top layer goes into.
public struct MigrationDiskList: Codable, Equatable, Sendable {
    public struct Layer: Codable, Equatable, Sendable {
        /// Absolute path at the source; the destination's copy must be at the same path.
        public var path: String
        public var format: String
        public var size: UInt64
        /// SHA-256 of the file's bytes, hex.
        public var sha256: String

        public init(path: String, format: String, size: UInt64, sha256: String) {
            self.path = path
            self.format = format
            self.size = size
            self.sha256 = sha256
        }
    }

    public struct Disk: Codable, Equatable, Sendable {
        public var index: Int
        public var virtualSize: UInt64
        public var clusterSize: UInt64
        /// The files below the top layer, nearest first (empty: the top layer has no backing file).
        public var backing: [Layer]

        public init(index: Int, virtualSize: UInt64, clusterSize: UInt64, backing: [Layer]) {
            self.index = index
            self.virtualSize = virtualSize
            self.clusterSize = clusterSize
            self.backing = backing
        }
    }

    public var disks: [Disk]

    public init(disks: [Disk]) { self.disks = disks }

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(self))
    }

    /// Decodes and checks it against the plan: exactly the copied disks, in
    /// order; cluster sizes qcow2 allows; sizes and chains within limits.
    public static func decode(_ bytes: [UInt8], plan: MigrationDiskPlan) throws -> MigrationDiskList {
        let list: MigrationDiskList
        do {
            list = try JSONDecoder().decode(MigrationDiskList.self, from: Data(bytes))
        } catch {
            throw MigrationError(.malformed, "the disks message does not decode: \(error)")
        }
        let expected = plan.copied.indices.filter { plan.copied[$0] }
        guard list.disks.map(\.index) == expected else {
            throw MigrationError(.malformed, "the disks message describes disks \(list.disks.map(\.index)), the plan asked for \(expected)")
        }
        for d in list.disks {
            let cs = d.clusterSize
            guard cs >= 512, cs <= UInt64(DiskRun.maxDataBytes), cs & (cs - 1) == 0,
                  d.virtualSize > 0, d.virtualSize % 512 == 0, d.virtualSize <= 1 << 55, d.backing.count <= 16,
                  d.backing.allSatisfy({ $0.path.hasPrefix("/") && $0.path.utf8.count <= 4096 && $0.sha256.utf8.count == 64
                                         && ($0.format == "raw" || $0.format == "qcow2") }) else {
                throw MigrationError(.malformed, "the disks message has out-of-range values for disk \(d.index)")
            }
        }
        return list
    }
}
