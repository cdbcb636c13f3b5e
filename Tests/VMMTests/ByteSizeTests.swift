import Testing
@testable import VMM

struct ByteSizeTests {
    @Test(arguments: [("512M", UInt64(512) << 20), ("2G", 2 << 30), ("64k", 64 << 10), ("4096", 4096),
                      ("1GiB", 1 << 30), ("3MB", 3 << 20), ("1T", 1 << 40)])
    func parsesHumanSizes(text: String, bytes: UInt64) throws {
        #expect(try ByteSize.parse(text) == bytes)
    }

    @Test(arguments: ["", "M", "12Q", "-1G", "1.5G", "99999999999999999999", "16777216T", "0x100"])
    func refusesNonsense(text: String) {
        #expect(throws: ByteSize.ParseError.self) { try ByteSize.parse(text) }
    }

    @Test func formatsExactUnits() {
        #expect(ByteSize.format(512 << 20) == "512 MiB")
        #expect(ByteSize.format(3 << 30) == "3 GiB")
        #expect(ByteSize.format(1000) == "1000 B")
    }
}

struct MachineConfigTests {
    func config(cpus: Int = 1, memory: UInt64 = 64 << 20, kernel: String = "/etc/hostname") -> MachineConfig {
        MachineConfig(kernelPath: kernel, cpuCount: cpus, memorySize: memory)
    }

    @Test func acceptsASaneConfig() throws {
        try config().validate(hostMemory: 1 << 30)
    }

    @Test func refusesBadValuesWithClearMessages() {
        #expect(throws: ConfigError.self) { try config(cpus: 0).validate(hostMemory: 1 << 30) }
        #expect(throws: ConfigError.self) { try config(cpus: 65).validate(hostMemory: 1 << 30) }
        #expect(throws: ConfigError.self) { try config(memory: 0).validate(hostMemory: 1 << 30) }
        #expect(throws: ConfigError.self) { try config(memory: 4 << 20).validate(hostMemory: 1 << 30) }
        #expect(throws: ConfigError.self) { try config(memory: (64 << 20) + 1).validate(hostMemory: 1 << 30) }
        #expect(throws: ConfigError("--memory 2 GiB is more than the host has (1 GiB)")) {
            try config(memory: 2 << 30).validate(hostMemory: 1 << 30)
        }
        #expect(throws: ConfigError.self) { try config(kernel: "/nonexistent").validate(hostMemory: 1 << 30) }
    }

    @Test func hostMemoryIsReadFromProc() {
        #expect((MachineConfig.hostMemoryTotal() ?? 0) > 64 << 20)
    }
}
