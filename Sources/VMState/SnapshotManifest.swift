/// `manifest.json`: what a person (or a restore) needs to know about a snapshot
/// without decoding the machine state: versions, when, the machine config, and
/// each file with its size and checksum. Written last, so a directory without
/// it is an unfinished snapshot.
public struct SnapshotManifest: Codable, Equatable, Sendable {
    /// The `format` value of every Skiff snapshot (the manifest's magic).
    public static let formatName = "skiff-snapshot"
    /// The container version this build writes; it reads this one and the one before.
    public static let currentVersion = 1
    public static let oldestReadableVersion = 1

    public var format: String
    public var formatVersion: Int
    /// The Skiff build that wrote it (for people; not checked).
    public var skiffVersion: String
    /// ISO 8601, UTC.
    public var createdAt: String
    public var machine: SnapshotMachineConfig
    public var files: [SnapshotFile]

    public init(skiffVersion: String, createdAt: String, machine: SnapshotMachineConfig, files: [SnapshotFile]) {
        self.format = SnapshotManifest.formatName
        self.formatVersion = SnapshotManifest.currentVersion
        self.skiffVersion = skiffVersion
        self.createdAt = createdAt
        self.machine = machine
        self.files = files
    }

    public func file(_ role: SnapshotFile.Role) -> SnapshotFile? {
        files.first { $0.role == role }
    }
}

/// One file of the snapshot directory.
public struct SnapshotFile: Codable, Equatable, Sendable {
    public enum Role: String, Codable, Sendable {
        /// `state.bin`: vCPUs, VM-wide KVM state, devices.
        case state
        /// Guest RAM, the memory map's ranges back to back.
        case memory
    }

    public var role: Role
    /// A plain file name inside the snapshot directory (no `/`).
    public var name: String
    public var size: UInt64
    /// CRC-64/XZ of the whole file, 16 hex digits; nil when not computed (memory, on request).
    public var crc64: String?

    public init(role: Role, name: String, size: UInt64, crc64: String?) {
        self.role = role
        self.name = name
        self.size = size
        self.crc64 = crc64
    }
}

/// The machine the state belongs to: what a restore must rebuild before it
/// applies the state.
public struct SnapshotMachineConfig: Codable, Equatable, Sendable {
    public var kernelPath: String
    public var initrdPath: String?
    public var commandLine: String
    public var cpuCount: Int
    public var memorySize: UInt64
    /// Guest RAM ranges in the order the memory file holds them.
    public var memoryMap: [MemoryRange]
    public var devices: [DeviceDescription]

    public init(kernelPath: String, initrdPath: String?, commandLine: String, cpuCount: Int, memorySize: UInt64,
                memoryMap: [MemoryRange], devices: [DeviceDescription]) {
        self.kernelPath = kernelPath
        self.initrdPath = initrdPath
        self.commandLine = commandLine
        self.cpuCount = cpuCount
        self.memorySize = memorySize
        self.memoryMap = memoryMap
        self.devices = devices
    }

    /// A guest-physical range of RAM and where its bytes are in the memory file.
    public struct MemoryRange: Codable, Equatable, Sendable {
        public var guestAddress: UInt64
        public var size: UInt64
        public var fileOffset: UInt64

        public init(guestAddress: UInt64, size: UInt64, fileOffset: UInt64) {
            self.guestAddress = guestAddress
            self.size = size
            self.fileOffset = fileOffset
        }
    }

    /// A device as configured: enough for a person to read, and for a restore
    /// to reopen its backend (disk path, TAP name).
    public struct DeviceDescription: Codable, Equatable, Sendable {
        /// "serial", "i8042", "acpi-sleep", "virtio-block", "virtio-net".
        public var kind: String
        /// Port for port-I/O devices, MMIO base for memory-mapped ones.
        public var address: UInt64
        public var gsi: UInt32?
        public var path: String?
        public var readOnly: Bool?
        public var serial: String?
        public var tap: String?
        public var mac: String?
        /// Disks: "qcow2" or "raw", as opened.
        public var format: String?
        /// Disks: the frozen copy of the top layer, a plain name inside the
        /// snapshot directory (nil for a read-only disk, which is referenced).
        public var frozenFile: String?
        public var frozenSize: UInt64?
        /// Disks: the files the snapshot references and does not copy (a
        /// read-only disk, the backing chain below a frozen qcow2 layer), top
        /// first; a restore refuses them changed.
        public var referencedFiles: [FileIdentity]?

        public init(kind: String, address: UInt64, gsi: UInt32? = nil, path: String? = nil, readOnly: Bool? = nil,
                    serial: String? = nil, tap: String? = nil, mac: String? = nil) {
            self.kind = kind
            self.address = address
            self.gsi = gsi
            self.path = path
            self.readOnly = readOnly
            self.serial = serial
            self.tap = tap
            self.mac = mac
        }
    }

    /// A file a snapshot refers to but does not hold: where it was and what it
    /// looked like (a cheap identity: size and modification time, to the ns).
    public struct FileIdentity: Codable, Equatable, Sendable {
        public var path: String
        public var size: UInt64
        public var modifiedNanoseconds: Int64
        public init(path: String, size: UInt64, modifiedNanoseconds: Int64) {
            self.path = path
            self.size = size
            self.modifiedNanoseconds = modifiedNanoseconds
        }
    }
}
