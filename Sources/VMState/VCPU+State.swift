import CKVM
import KVM

extension VCPU {
    /// Reads the vCPU's whole state. Every vCPU of the VM must be stopped (paused):
    /// KVM_GET_VCPU_EVENTS is not safe while others run.
    ///
    /// Order matters: KVM_GET_MP_STATE first, because it lets KVM accept pending
    /// INIT/SIPI events, which can change RIP, CS and the LAPIC; events last.
    /// - Parameters:
    ///   - msrIndices: the MSRs to save, normally `KVM.msrIndexList()`.
    ///   - xsaveSize: `VirtualMachine.xsaveSize` (KVM_CAP_XSAVE2).
    public func saveState(msrIndices: [UInt32], xsaveSize: Int = VCPU.legacyXSAVESize) throws -> VCPUState {
        let mp = try mpState()
        let r = try registers()
        let s = try specialRegisters()
        let area = try xsave(size: xsaveSize)
        let x = try xcrs()
        let d = try debugRegisters()
        let apic = try localAPIC()
        let khz = try tscKHz()
        let table = try cpuid()
        var msrs = try readMSRs(msrIndices).values
        msrs.fixZeroTSCDeadline()
        let fpuBlock = try fpu()
        let ev = try events()

        // SAFETY: kvm_xcrs.xcrs is a C array of KVM_MAX_XCRS kvm_xcr; nr_xcrs is capped to it.
        let xcrList = withUnsafeBytes(of: x.xcrs) { raw in
            Array(raw.bindMemory(to: kvm_xcr.self).prefix(Int(min(x.nr_xcrs, UInt32(StateLimits.xcrs)))))
        }
        // SAFETY (interrupt bitmap below): a C array of four UInt64, read as such.
        return VCPUState(
            id: id,
            registers: .init(rax: r.rax, rbx: r.rbx, rcx: r.rcx, rdx: r.rdx, rsi: r.rsi, rdi: r.rdi, rsp: r.rsp, rbp: r.rbp,
                             r8: r.r8, r9: r.r9, r10: r.r10, r11: r.r11, r12: r.r12, r13: r.r13, r14: r.r14, r15: r.r15,
                             rip: r.rip, rflags: r.rflags),
            specialRegisters: .init(
                cs: .init(s.cs), ds: .init(s.ds), es: .init(s.es), fs: .init(s.fs), gs: .init(s.gs), ss: .init(s.ss),
                tr: .init(s.tr), ldt: .init(s.ldt),
                gdtBase: s.gdt.base, gdtLimit: s.gdt.limit, idtBase: s.idt.base, idtLimit: s.idt.limit,
                cr0: s.cr0, cr2: s.cr2, cr3: s.cr3, cr4: s.cr4, cr8: s.cr8, efer: s.efer, apicBase: s.apic_base,
                interruptBitmap: withUnsafeBytes(of: s.interrupt_bitmap) { Array($0.bindMemory(to: UInt64.self)) }),
            msrs: msrs,
            mpState: mp,
            fpu: VCPUState.bytes(of: fpuBlock),
            localAPIC: VCPUState.bytes(of: apic),
            events: VCPUState.bytes(of: ev),
            cpuid: table.map { .init(function: $0.function, index: $0.index, flags: $0.flags,
                                     eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx) },
            xsave: area,
            xcrs: xcrList.map { .init(index: $0.xcr, value: $0.value) },
            debugRegisters: .init(db: [d.db.0, d.db.1, d.db.2, d.db.3], dr6: d.dr6, dr7: d.dr7, flags: d.flags),
            tscKHz: khz)
    }

    /// Applies a saved state to a vCPU that has not run since it was created.
    /// The whole state is validated first, so a bad one changes nothing.
    ///
    /// Order (each step's reason in docs/snapshot-format.md): TSC frequency →
    /// CPUID → MP state → regs → sregs → XSAVE (or FPU) → XCRs → debug registers
    /// → LAPIC → MSRs (TSC deadline last) → events.
    public func restoreState(_ state: VCPUState, xsaveSize: Int = VCPU.legacyXSAVESize) throws {
        try state.validate()
        guard state.xsave.count <= max(xsaveSize, VCPU.legacyXSAVESize) else {
            throw VCPUStateError(message: "vCPU \(state.id): XSAVE area is \(state.xsave.count) bytes, "
                + "this host's KVM takes \(max(xsaveSize, VCPU.legacyXSAVESize)) (CPU model differs)")
        }
        try restoreTSCFrequency(state.tscKHz)
        if !state.cpuid.isEmpty {
            try setCPUID(state.cpuid.map {
                var e = kvm_cpuid_entry2()
                e.function = $0.function; e.index = $0.index; e.flags = $0.flags
                e.eax = $0.eax; e.ebx = $0.ebx; e.ecx = $0.ecx; e.edx = $0.edx
                return e
            })
        }
        try setMPState(state.mpState)
        try setRegisters(state.registers.kvm)
        try setSpecialRegisters(try state.specialRegisters.kvm(current: specialRegisters()))
        if state.xsave.isEmpty {
            try setFPU(VCPUState.value(kvm_fpu(), from: state.fpu))
        } else {
            try setXSAVE(state.xsave, size: xsaveSize)
        }
        if !state.xcrs.isEmpty {
            var x = kvm_xcrs()
            x.nr_xcrs = UInt32(state.xcrs.count)
            // SAFETY: validate() capped the count at KVM_MAX_XCRS, the array's length.
            withUnsafeMutableBytes(of: &x.xcrs) { raw in
                let slots = raw.bindMemory(to: kvm_xcr.self)
                for (i, xcr) in state.xcrs.enumerated() { slots[i].xcr = xcr.index; slots[i].value = xcr.value }
            }
            try setXCRs(x)
        }
        if let d = state.debugRegisters {
            var k = kvm_debugregs()
            k.db = (d.db[0], d.db[1], d.db[2], d.db[3]); k.dr6 = d.dr6; k.dr7 = d.dr7; k.flags = d.flags
            try setDebugRegisters(k)
        }
        try setLocalAPIC(VCPUState.value(kvm_lapic_state(), from: state.localAPIC))
        try writeMSRs(state.msrs)
        try setEvents(VCPUState.value(kvm_vcpu_events(), from: state.events))
    }

    /// Sets the saved TSC frequency when this host's differs by more than 250 ppm
    /// (Firecracker's threshold): the guest calibrated its clocks against it.
    func restoreTSCFrequency(_ saved: UInt32?) throws {
        guard let saved, saved > 0, let current = try tscKHz() else { return }
        let delta = UInt64(current > saved ? current - saved : saved - current)
        guard delta * 1_000_000 > UInt64(saved) * 250 else { return }
        do {
            try setTSCKHz(saved)
        } catch {
            throw VCPUStateError(message: "vCPU \(id): the guest's TSC runs at \(saved) kHz, this host's at \(current) kHz, "
                + "and KVM cannot scale it (\(error))")
        }
    }
}

extension VCPUState.Registers {
    var kvm: kvm_regs {
        var r = kvm_regs()
        r.rax = rax; r.rbx = rbx; r.rcx = rcx; r.rdx = rdx; r.rsi = rsi; r.rdi = rdi; r.rsp = rsp; r.rbp = rbp
        r.r8 = r8; r.r9 = r9; r.r10 = r10; r.r11 = r11; r.r12 = r12; r.r13 = r13; r.r14 = r14; r.r15 = r15
        r.rip = rip; r.rflags = rflags
        return r
    }
}

extension VCPUState.SpecialRegisters {
    /// `current` supplies nothing but a correctly shaped value; every field is overwritten.
    func kvm(current: kvm_sregs) -> kvm_sregs {
        var s = current
        s.cs = cs.kvm; s.ds = ds.kvm; s.es = es.kvm; s.fs = fs.kvm
        s.gs = gs.kvm; s.ss = ss.kvm; s.tr = tr.kvm; s.ldt = ldt.kvm
        s.gdt.base = gdtBase; s.gdt.limit = gdtLimit; s.idt.base = idtBase; s.idt.limit = idtLimit
        s.cr0 = cr0; s.cr2 = cr2; s.cr3 = cr3; s.cr4 = cr4; s.cr8 = cr8
        s.efer = efer; s.apic_base = apicBase
        let bitmap = interruptBitmap
        withUnsafeMutableBytes(of: &s.interrupt_bitmap) { raw in
            // SAFETY: validate() checked that the bitmap has exactly as many words as the field holds.
            for (i, word) in bitmap.enumerated() { raw.storeBytes(of: word, toByteOffset: i * 8, as: UInt64.self) }
        }
        return s
    }
}

extension VCPUState.Segment {
    init(_ k: kvm_segment) {
        self.init(base: k.base, limit: k.limit, selector: k.selector, type: k.type, present: k.present, dpl: k.dpl,
                  db: k.db, s: k.s, l: k.l, g: k.g, avl: k.avl, unusable: k.unusable)
    }

    var kvm: kvm_segment {
        var k = kvm_segment()
        k.base = base; k.limit = limit; k.selector = selector; k.type = type; k.present = present; k.dpl = dpl
        k.db = db; k.s = s; k.l = l; k.g = g; k.avl = avl; k.unusable = unusable
        return k
    }
}
