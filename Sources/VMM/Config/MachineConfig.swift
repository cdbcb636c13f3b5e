import FoundationEssentials
import Storage
import Virtio
import X86
#if canImport(Glibc)
import Glibc
#endif

/// Everything `skiff run` needs to build a VM, validated before any KVM call.
public struct MachineConfig: Sendable {
    public var kernelPath: String
    public var initrdPath: String?
    public var commandLine: String
    public var cpuCount: Int
    public var memorySize: UInt64
    /// virtio-blk disks, in the order the guest sees them (vda, vdb, …).
    public var disks: [BlockDeviceConfig]
    /// virtio-net interfaces over TAP devices (eth0, eth1, …).
    public var networks: [NetDeviceConfig]

    public static let defaultCommandLine = "console=ttyS0 reboot=k panic=1"
    public static let minimumMemory: UInt64 = 8 << 20
    /// Bounded by the MP table, which must fit below 640 KiB for kernels without ACPI.
    public static let maximumCPUs = MPTable.maxCPUCount

    public init(kernelPath: String, initrdPath: String? = nil, commandLine: String = MachineConfig.defaultCommandLine,
                cpuCount: Int = 1, memorySize: UInt64 = 256 << 20,
                disks: [BlockDeviceConfig] = [], networks: [NetDeviceConfig] = []) {
        self.disks = disks
        self.networks = networks
        self.kernelPath = kernelPath
        self.initrdPath = initrdPath
        self.commandLine = commandLine
        self.cpuCount = cpuCount
        self.memorySize = memorySize
    }

    /// Checks what can be checked without KVM; `hostMemory` is the host's total RAM.
    /// - Parameter bootFiles: check the kernel and initrd are readable (a restore
    ///   does not read them: its RAM already holds the booted guest).
    public func validate(hostMemory: UInt64? = MachineConfig.hostMemoryTotal(), bootFiles: Bool = true) throws {
        guard (1...MachineConfig.maximumCPUs).contains(cpuCount) else {
            throw ConfigError("--cpus must be between 1 and \(MachineConfig.maximumCPUs), got \(cpuCount)")
        }
        guard memorySize > 0 else { throw ConfigError("--memory must be more than 0") }
        guard memorySize >= MachineConfig.minimumMemory else {
            throw ConfigError("--memory must be at least \(ByteSize(bytes: MachineConfig.minimumMemory).humanReadable), got \(ByteSize(bytes: memorySize).humanReadable)")
        }
        guard memorySize % 4096 == 0 else { throw ConfigError("--memory must be a multiple of 4 KiB") }
        if let hostMemory, memorySize > hostMemory {
            throw ConfigError("--memory \(ByteSize(bytes: memorySize).humanReadable) is more than the host has (\(ByteSize(bytes: hostMemory).humanReadable))")
        }
        if bootFiles { try MachineConfig.checkReadableFile(kernelPath, what: "kernel") }
        if bootFiles, let initrdPath { try MachineConfig.checkReadableFile(initrdPath, what: "initrd") }
        let deviceCount = disks.count + networks.count
        let irqs = Int(Layout.lastIRQ - Layout.firstVirtioIRQ) + 1
        guard deviceCount <= min(Layout.virtioMMIOMaxDevices, irqs) else {
            throw ConfigError("too many devices: \(deviceCount) (--disk and --net together), the limit is \(min(Layout.virtioMMIOMaxDevices, irqs))")
        }
        for disk in disks { try MachineConfig.checkReadableFile(disk.path, what: "disk image") }
        let taps = networks.map(\.tap)
        if let duplicate = taps.first(where: { name in taps.filter { $0 == name }.count > 1 }) {
            throw ConfigError("TAP device '\(duplicate)' is given to more than one --net")
        }
    }

    static func checkReadableFile(_ path: String, what: String) throws {
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ConfigError("\(what) file '\(path)' does not exist")
        }
        guard !isDirectory else { throw ConfigError("\(what) '\(path)' is a directory, not a file") }
        guard FileManager.default.isReadableFile(atPath: path) else { throw ConfigError("\(what) file '\(path)' is not readable") }
    }

    /// The host's RAM in bytes (MemTotal): glibc answers _SC_PHYS_PAGES from sysinfo(2).
    /// Reading and splitting /proc/meminfo cost 0.66 M instructions at every start.
    public static func hostMemoryTotal() -> UInt64? {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, size > 0 else { return nil }
        return UInt64(pages) * UInt64(size)
    }
}

/// A configuration mistake the user can fix; the message says how.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
