import CKVM

/// Whether this host can run a guest that was given a set of CPU features: a
/// guest saved (or migrated) on one host uses every feature its CPUID showed,
/// and on a host whose KVM lacks one it would fault on the first such
/// instruction, long after the restore "worked". So a restore (and a migration's
/// destination) compares the saved CPUID with what this host gives a freshly
/// set-up vCPU (`KVM_GET_CPUID2`; under kvm_pvm that is the host's own CPUID,
/// much more than `KVM_GET_SUPPORTED_CPUID` lists) before anything runs, and
/// refuses with the features that are missing.
public enum CPUCompatibility {
    /// A CPUID register that holds feature flags, and the bits in it that are
    /// not host features: set by the guest's own control registers (OSXSAVE,
    /// OSPKE), by the VMM (hypervisor, HTT), or offered by KVM outside
    /// GET_SUPPORTED_CPUID (x2APIC, TSC deadline: capabilities of the in-kernel LAPIC).
    struct FeatureWord: Sendable {
        let function: UInt32, index: UInt32, register: String
        let value: KeyPath<VCPUState.CPUIDEntry, UInt32> & Sendable
        let ignored: UInt32
        let names: [Int: String]
    }

    static let featureWords: [FeatureWord] = [
        .init(function: 1, index: 0, register: "ecx", value: \.ecx,
              ignored: 1 << 21 | 1 << 24 | 1 << 27 | 1 << 31,
              names: [0: "sse3", 9: "ssse3", 12: "fma", 19: "sse4.1", 20: "sse4.2", 22: "movbe", 23: "popcnt",
                      25: "aes", 26: "xsave", 28: "avx", 29: "f16c", 30: "rdrand"]),
        .init(function: 1, index: 0, register: "edx", value: \.edx, ignored: 1 << 28,
              names: [0: "fpu", 4: "tsc", 5: "msr", 25: "sse", 26: "sse2"]),
        .init(function: 7, index: 0, register: "ebx", value: \.ebx, ignored: 0,
              names: [3: "bmi1", 5: "avx2", 8: "bmi2", 9: "erms", 16: "avx512f", 18: "rdseed", 19: "adx",
                      29: "sha", 30: "avx512bw", 31: "avx512vl"]),
        .init(function: 7, index: 0, register: "ecx", value: \.ecx, ignored: 1 << 4,
              names: [1: "avx512vbmi", 8: "gfni", 9: "vaes", 10: "vpclmulqdq"]),
        .init(function: 7, index: 0, register: "edx", value: \.edx, ignored: 0, names: [:]),
        .init(function: 7, index: 1, register: "eax", value: \.eax, ignored: 0, names: [4: "avx-vnni", 5: "avx512bf16"]),
        .init(function: 0xD, index: 1, register: "eax", value: \.eax, ignored: 0,
              names: [0: "xsaveopt", 1: "xsavec", 3: "xsaves"]),
        .init(function: 0x8000_0001, index: 0, register: "ecx", value: \.ecx, ignored: 0,
              names: [0: "lahf_lm", 5: "abm", 8: "3dnowprefetch"]),
        .init(function: 0x8000_0001, index: 0, register: "edx", value: \.edx, ignored: 0,
              names: [11: "syscall", 20: "nx", 26: "pdpe1gb", 27: "rdtscp", 29: "lm"]),
    ]

    /// The features `saved` (one vCPU's CPUID) uses that `supported` lacks, as
    /// "avx512f (CPUID 7.0 ebx bit 16)"; empty when this host can run it.
    public static func missingFeatures(saved: [VCPUState.CPUIDEntry], supported: [VCPUState.CPUIDEntry]) -> [String] {
        var missing: [String] = []
        for word in featureWords {
            guard let guest = saved.first(where: { $0.function == word.function && $0.index == word.index }) else { continue }
            let offered = supported.first(where: { $0.function == word.function && $0.index == word.index })
            let lacking = guest[keyPath: word.value] & ~(offered?[keyPath: word.value] ?? 0) & ~word.ignored
            for bit in 0..<32 where lacking & (1 << UInt32(bit)) != 0 {
                let leaf = "CPUID \(String(word.function, radix: 16)).\(word.index) \(word.register) bit \(bit)"
                missing.append(word.names[bit].map { "\($0) (\(leaf))" } ?? leaf)
            }
        }
        return missing
    }

    /// The saved XCR0 must enable only state components this host's KVM
    /// supports (CPUID 0xD.0 EAX/EDX), or KVM_SET_XCRS would fail mid-restore.
    public static func missingXSaveComponents(savedXCR0: UInt64, supported: [VCPUState.CPUIDEntry]) -> UInt64 {
        guard let leaf = supported.first(where: { $0.function == 0xD && $0.index == 0 }) else { return 0 }
        let offered = UInt64(leaf.eax) | UInt64(leaf.edx) << 32
        return savedXCR0 & ~offered
    }

    /// Throws `incompatibleHost` naming what is missing, for every vCPU of `state`.
    public static func check(_ state: MachineState, supported: [VCPUState.CPUIDEntry]) throws {
        for (i, vcpu) in state.vcpus.enumerated() {
            let missing = missingFeatures(saved: vcpu.cpuid, supported: supported)
            if !missing.isEmpty {
                throw SnapshotError(.incompatibleHost, "vCPU \(i) was given CPU features this host's KVM does not offer: "
                    + missing.joined(separator: ", "))
            }
            if let xcr0 = vcpu.xcrs.first(where: { $0.index == 0 })?.value {
                let components = missingXSaveComponents(savedXCR0: xcr0, supported: supported)
                if components != 0 {
                    throw SnapshotError(.incompatibleHost, "vCPU \(i) has XSAVE components 0x\(String(components, radix: 16)) "
                        + "enabled that this host's KVM does not support")
                }
            }
        }
    }

    /// A `kvm_cpuid_entry2` table (a vCPU's, or KVM's supported one) in the state's own form.
    public static func entries(_ table: [kvm_cpuid_entry2]) -> [VCPUState.CPUIDEntry] {
        table.map { .init(function: $0.function, index: $0.index, flags: $0.flags,
                          eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx) }
    }
}
