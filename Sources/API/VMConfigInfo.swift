/// The VM's configuration as `vm.info` reports it. JSON keys are snake_case in Cloud
/// Hypervisor's style (`cpus.boot_vcpus`, `memory.size`, `disks[].readonly`,
/// `net[].tap`), with the payload (kernel, initrd, cmdline) at the top level.
public struct VMConfigInfo: Codable, Sendable, Equatable {
    public struct CPUs: Codable, Sendable, Equatable {
        public var bootVCPUs: Int
        public init(bootVCPUs: Int) { self.bootVCPUs = bootVCPUs }
        enum CodingKeys: String, CodingKey { case bootVCPUs = "boot_vcpus" }
    }

    public struct Memory: Codable, Sendable, Equatable {
        /// Guest RAM in bytes.
        public var size: UInt64
        public init(size: UInt64) { self.size = size }
    }

    public struct Disk: Codable, Sendable, Equatable {
        public var path: String
        public var readonly: Bool
        /// "raw" or "qcow2".
        public var format: String
        public var serial: String?
        public init(path: String, readonly: Bool, format: String, serial: String? = nil) {
            self.path = path
            self.readonly = readonly
            self.format = format
            self.serial = serial
        }
    }

    public struct Net: Codable, Sendable, Equatable {
        public var tap: String
        /// "52:54:00:12:34:56" form.
        public var mac: String
        public init(tap: String, mac: String) {
            self.tap = tap
            self.mac = mac
        }
    }

    public var kernel: String?
    public var initrd: String?
    public var cmdline: String?
    public var cpus: CPUs
    public var memory: Memory
    public var disks: [Disk]
    public var net: [Net]

    public init(kernel: String?, initrd: String?, cmdline: String?, cpus: CPUs, memory: Memory,
                disks: [Disk] = [], net: [Net] = []) {
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        self.cpus = cpus
        self.memory = memory
        self.disks = disks
        self.net = net
    }
}
