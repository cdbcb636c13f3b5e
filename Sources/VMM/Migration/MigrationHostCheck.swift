import CKVM
import KVM
import Migration
import VMState

/// The destination's checks of a migration config against this host, before
/// any memory is sent: the guest must find the CPU it was given.
enum MigrationHostCheck {
    /// CPUID leaf 0's vendor string ("GenuineIntel", "AuthenticAMD").
    static func vendor(of cpuid: [kvm_cpuid_entry2]) -> String {
        guard let leaf0 = cpuid.first(where: { $0.function == 0 }) else { return "" }
        var bytes: [UInt8] = []
        for r in [leaf0.ebx, leaf0.edx, leaf0.ecx] { withUnsafeBytes(of: r.littleEndian) { bytes += $0 } }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The feature registers compared, with bits that the guest itself changes
    /// masked out (OSXSAVE follows CR4.OSXSAVE, OSPKE follows CR4.PKE).
    private static let featureRegisters: [(function: UInt32, index: UInt32, register: String, ignore: UInt32)] = [
        (1, 0, "ecx", 1 << 27), (1, 0, "edx", 0),
        (7, 0, "ebx", 0), (7, 0, "ecx", 1 << 4), (7, 0, "edx", 0),
        (0xD, 1, "eax", 0),
        (0x8000_0001, 0, "ecx", 0), (0x8000_0001, 0, "edx", 0),
    ]

    /// Throws a `.refused` error naming what this host lacks.
    /// - Parameter offered: the CPUID this host's Skiff gives the same machine (vCPU 0).
    static func check(_ config: MigrationConfig, offered: [kvm_cpuid_entry2], hostVendor: String, xsaveSize: Int) throws {
        guard config.cpuVendor == hostVendor else {
            throw MigrationError(.refused, "the source CPU is \(config.cpuVendor.prefix(16)), this host's is \(hostVendor)")
        }
        guard config.xsaveSize == xsaveSize else {
            throw MigrationError(.refused, "the source's XSAVE area is \(config.xsaveSize) bytes, this host's \(xsaveSize)")
        }
        var missing: [String] = []
        for f in featureRegisters {
            let guest = config.guestCPUID.first { $0.function == f.function && $0.index == f.index }
            let host = offered.first { $0.function == f.function && $0.index == f.index }
            let want = (guest.map { value($0.eax, $0.ebx, $0.ecx, $0.edx, f.register) } ?? 0) & ~f.ignore
            let have = host.map { value($0.eax, $0.ebx, $0.ecx, $0.edx, f.register) } ?? 0
            let lacking = want & ~have
            if lacking != 0 {
                missing.append("CPUID 0x\(String(f.function, radix: 16)).\(f.index) \(f.register) bits 0x\(String(lacking, radix: 16))")
            }
        }
        guard missing.isEmpty else {
            throw MigrationError(.refused, "this host's CPU lacks features the guest was given: " + missing.joined(separator: ", "))
        }
    }

    private static func value(_ eax: UInt32, _ ebx: UInt32, _ ecx: UInt32, _ edx: UInt32, _ register: String) -> UInt32 {
        switch register {
        case "eax": return eax
        case "ebx": return ebx
        case "ecx": return ecx
        default: return edx
        }
    }
}
