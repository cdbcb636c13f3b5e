import FoundationEssentials
import VMState

/// The `start` payload: magic "SKIFFMIG" and the sender's protocol version
/// (u32 LE). The destination takes its own version and the one before, so a
/// newer Skiff receives from the previous release. Version 2 adds disks
/// without shared storage (`diskPlan`, `disks`, `disk` messages); a version 1
/// stream is the same without them.
public enum MigrationVersion {
    public static let magic: [UInt8] = Array("SKIFFMIG".utf8)
    public static let current: UInt32 = 2
    /// The first version that can send disks without shared storage.
    public static let disks: UInt32 = 2
    public static let oldestAccepted: UInt32 = 1

    public static func startPayload(version: UInt32 = current) -> [UInt8] {
        var out = magic
        withUnsafeBytes(of: version.littleEndian) { out += $0 }
        return out
    }

    /// The sender's version, or a clear refusal.
    public static func check(startPayload bytes: [UInt8]) throws -> UInt32 {
        guard bytes.count == magic.count + 4, Array(bytes.prefix(magic.count)) == magic else {
            throw MigrationError(.malformed, "the stream does not start with a Skiff migration header")
        }
        let version = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: magic.count, as: UInt32.self)) }
        guard (oldestAccepted...current).contains(version) else {
            throw MigrationError(.refused, "migration protocol version \(version); this Skiff takes \(oldestAccepted)...\(current)")
        }
        return version
    }
}

/// The `config` payload (JSON): the machine to build and the host facts the
/// guest depends on. The destination checks it all before any memory is sent.
public struct MigrationConfig: Codable, Equatable, Sendable {
    public var skiffVersion: String
    /// The machine as a snapshot manifest records it (vCPUs, RAM and its map, devices).
    public var machine: SnapshotMachineConfig
    /// The CPU vendor string of the source host ("GenuineIntel", "AuthenticAMD").
    public var cpuVendor: String
    /// The CPUID the guest was given (vCPU 0's); its feature bits must all be
    /// offered by the destination's KVM.
    public var guestCPUID: [VCPUState.CPUIDEntry]
    /// KVM's XSAVE area size on the source; the saved blobs only fit the same size.
    public var xsaveSize: Int
    /// The guest TSC frequency, when KVM reports one.
    public var tscKHz: UInt32?

    public init(skiffVersion: String, machine: SnapshotMachineConfig, cpuVendor: String,
                guestCPUID: [VCPUState.CPUIDEntry], xsaveSize: Int, tscKHz: UInt32?) {
        self.skiffVersion = skiffVersion
        self.machine = machine
        self.cpuVendor = cpuVendor
        self.guestCPUID = guestCPUID
        self.xsaveSize = xsaveSize
        self.tscKHz = tscKHz
    }

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(self))
    }

    /// Decodes and checks everything that needs no KVM: the machine config as a
    /// snapshot manifest's is checked, and the list sizes.
    public static func decode(_ bytes: [UInt8]) throws -> MigrationConfig {
        let config: MigrationConfig
        do {
            config = try JSONDecoder().decode(MigrationConfig.self, from: Data(bytes))
        } catch {
            throw MigrationError(.malformed, "the config message does not decode: \(error)")
        }
        do {
            try config.machine.validate()
        } catch {
            throw MigrationError(.refused, "the machine config is not valid: \(error)")
        }
        guard config.guestCPUID.count <= StateLimits.cpuidEntries, config.cpuVendor.utf8.count <= 64,
              config.skiffVersion.utf8.count <= 128, (0...StateLimits.xsaveBytes).contains(config.xsaveSize) else {
            throw MigrationError(.malformed, "the config message has out-of-range host facts")
        }
        return config
    }
}
