import Foundation
import Testing
@testable import VMM

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

    @Test func hostMemoryIsMemTotal() throws {
        // sysinfo(2)'s total RAM is what /proc/meminfo calls MemTotal.
        let text = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("MemTotal:") })
        let kib = try #require(line.split(separator: " ").dropFirst().first.flatMap { UInt64($0) })
        #expect(MachineConfig.hostMemoryTotal() == kib * 1024)
    }
}
