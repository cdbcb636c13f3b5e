import CKVM
import KVM
import X86

/// Puts a vCPU in the state a kernel expects at entry: CPUID, MSRs, FPU, local
/// APIC wiring, and (for the boot vCPU) the registers from `BootCPUState`.
enum VCPUSetup {
    static func configure(_ vcpu: VCPU, supportedCPUID: [kvm_cpuid_entry2], cpuCount: Int) throws {
        let plain = supportedCPUID.map {
            CPUIDEntry(function: $0.function, index: $0.index, flags: $0.flags, eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx)
        }
        let adjusted = CPUIDSetup.entries(fromSupported: plain, vcpu: vcpu.id, vcpuCount: cpuCount)
        try vcpu.setCPUID(zip(supportedCPUID, adjusted).map { original, e in
            var k = original
            k.eax = e.eax; k.ebx = e.ebx; k.ecx = e.ecx; k.edx = e.edx
            return k
        })
        try setBootMSRs(vcpu)

        var fpu = kvm_fpu()
        fpu.fcw = 0x37F
        fpu.mxcsr = 0x1F80
        try vcpu.setFPU(fpu)

        // Virtual-wire mode: LINT0 takes the PIC's ExtINT, LINT1 takes NMIs.
        var lapic = try vcpu.localAPIC()
        withUnsafeMutableBytes(of: &lapic.regs) { regs in
            func setDeliveryMode(_ offset: Int, _ mode: UInt32) {
                var value = regs.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
                value = (value & ~0x700) | (mode << 8)
                regs.storeBytes(of: value, toByteOffset: offset, as: UInt32.self)
            }
            setDeliveryMode(0x350, 7)  // LVT LINT0: ExtINT
            setDeliveryMode(0x360, 4)  // LVT LINT1: NMI
        }
        try vcpu.setLocalAPIC(lapic)
    }

    /// Sets the boot MSRs, skipping any this host's KVM refuses (some are not
    /// virtualised on every host; none is essential to boot).
    private static func setBootMSRs(_ vcpu: VCPU) throws {
        do {
            try vcpu.setMSRs(BootMSRs.values)
        } catch {
            for msr in BootMSRs.values { try? vcpu.setMSRs([msr]) }
        }
    }

    static func setBootRegisters(_ vcpu: VCPU, _ state: BootCPUState) throws {
        var sregs = try vcpu.specialRegisters()
        sregs.cs = kvmSegment(state.code)
        for keyPath in [\kvm_sregs.ds, \kvm_sregs.es, \kvm_sregs.fs, \kvm_sregs.gs, \kvm_sregs.ss] {
            sregs[keyPath: keyPath] = kvmSegment(state.data)
        }
        sregs.tr = kvmSegment(state.taskState)
        sregs.gdt.base = state.gdtBase
        sregs.gdt.limit = state.gdtLimit
        sregs.idt.base = state.idtBase
        sregs.idt.limit = state.idtLimit
        sregs.cr0 = state.cr0
        sregs.cr3 = state.cr3
        sregs.cr4 = state.cr4
        sregs.efer = state.efer
        try vcpu.setSpecialRegisters(sregs)

        var regs = kvm_regs()
        regs.rip = state.rip
        regs.rsp = state.rsp
        regs.rbp = state.rsp
        regs.rsi = state.rsi
        regs.rbx = state.rbx
        regs.rflags = state.rflags
        try vcpu.setRegisters(regs)
    }

    static func kvmSegment(_ s: Segment) -> kvm_segment {
        var k = kvm_segment()
        k.base = s.base
        k.limit = s.limit
        k.selector = s.selector
        k.type = s.type
        k.present = s.present ? 1 : 0
        k.dpl = s.dpl
        k.db = s.db ? 1 : 0
        k.s = s.s ? 1 : 0
        k.l = s.l ? 1 : 0
        k.g = s.g ? 1 : 0
        k.unusable = s.present ? 0 : 1
        return k
    }
}
