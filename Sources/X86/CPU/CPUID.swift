/// One CPUID leaf as KVM describes it (`kvm_cpuid_entry2`), as plain data.
public struct CPUIDEntry: Equatable, Sendable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0,
                eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
        self.function = function; self.index = index; self.flags = flags
        self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }
}

/// Turns the host's supported CPUID into what one vCPU of an N-vCPU guest sees:
/// its APIC id, the CPU count, and the hypervisor bit.
public enum CPUIDSetup {
    static let hypervisorBit: UInt32 = 1 << 31   // leaf 1 ECX
    static let htBit: UInt32 = 1 << 28           // leaf 1 EDX

    public static func entries(fromSupported supported: [CPUIDEntry], vcpu: Int, vcpuCount: Int) -> [CPUIDEntry] {
        supported.map { entry in
            var e = entry
            switch e.function {
            case 1:
                // EBX[31:24] initial APIC id, EBX[23:16] logical processors per package.
                e.ebx = (e.ebx & 0x0000_FFFF) | (UInt32(vcpu & 0xFF) << 24) | (UInt32(min(vcpuCount, 255)) << 16)
                e.ecx |= hypervisorBit
                if vcpuCount > 1 { e.edx |= htBit } else { e.edx &= ~htBit }
            case 0xB, 0x1F:
                // Extended topology: EDX is the x2APIC id; one thread per core.
                e.edx = UInt32(vcpu)
                if e.index == 0 { e.eax = 0; e.ebx = 1; e.ecx = (1 << 8) | e.index }
                else if e.index == 1 { e.eax = UInt32(bitWidth(vcpuCount)); e.ebx = UInt32(vcpuCount); e.ecx = (2 << 8) | e.index }
                else { e.eax = 0; e.ebx = 0; e.ecx = e.index }
            case 4:
                // Cores per package - 1 in EAX[31:26].
                e.eax = (e.eax & 0x03FF_FFFF) | (UInt32(max(vcpuCount - 1, 0) & 0x3F) << 26)
            case 6:
                // No power-management features in a VM.
                e.ecx &= ~UInt32(1 << 3)  // EPB
            default:
                break
            }
            return e
        }
    }

    /// Bits needed to number `count` APIC ids.
    static func bitWidth(_ count: Int) -> Int {
        var width = 0
        while (1 << width) < count { width += 1 }
        return width
    }
}

/// MSR values a vCPU starts with (the rest stay at KVM's reset values).
public enum BootMSRs {
    public static let values: [(index: UInt32, value: UInt64)] = [
        (0x174, 0), (0x175, 0), (0x176, 0),          // SYSENTER_CS/ESP/EIP
        (0xC000_0081, 0), (0xC000_0082, 0),          // STAR, LSTAR
        (0xC000_0083, 0), (0xC000_0084, 0),          // CSTAR, SYSCALL_MASK
        (0xC000_0102, 0),                            // KERNEL_GS_BASE
        (0x10, 0),                                   // TSC
        (0x1A0, 1),                                  // MISC_ENABLE: fast strings
        (0x2FF, (1 << 11) | 6),                      // MTRR default type: enabled, write-back
    ]
}
