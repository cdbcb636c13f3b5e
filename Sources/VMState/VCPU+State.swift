import CKVM
import KVM

extension VCPU {
    /// Reads the vCPU's whole state. Call while it is not running (paused).
    /// `msrIndices` is the list KVM saves (`KVM.msrIndexList()`).
    public func saveState(msrIndices: [UInt32]) throws -> VCPUState {
        let r = try registers()
        let s = try specialRegisters()
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
            msrs: try msrs(msrIndices).map { VCPUState.MSR(index: $0.index, value: $0.value) },
            mpState: try mpState(),
            fpu: Self.bytes(of: try fpu()),
            localAPIC: Self.bytes(of: try localAPIC()),
            events: Self.bytes(of: try events()))
    }

    /// Applies a saved state; every opaque block must have KVM's exact size.
    public func restoreState(_ state: VCPUState) throws {
        var s = try specialRegisters()
        let sr = state.specialRegisters
        s.cs = sr.cs.kvm; s.ds = sr.ds.kvm; s.es = sr.es.kvm; s.fs = sr.fs.kvm
        s.gs = sr.gs.kvm; s.ss = sr.ss.kvm; s.tr = sr.tr.kvm; s.ldt = sr.ldt.kvm
        s.gdt.base = sr.gdtBase; s.gdt.limit = sr.gdtLimit; s.idt.base = sr.idtBase; s.idt.limit = sr.idtLimit
        s.cr0 = sr.cr0; s.cr2 = sr.cr2; s.cr3 = sr.cr3; s.cr4 = sr.cr4; s.cr8 = sr.cr8
        s.efer = sr.efer; s.apic_base = sr.apicBase
        guard sr.interruptBitmap.count == MemoryLayout.size(ofValue: s.interrupt_bitmap) / 8 else {
            throw VCPUStateError(message: "interrupt bitmap has \(sr.interruptBitmap.count) words")
        }
        withUnsafeMutableBytes(of: &s.interrupt_bitmap) { raw in
            for (i, word) in sr.interruptBitmap.enumerated() { raw.storeBytes(of: word, toByteOffset: i * 8, as: UInt64.self) }
        }
        try setSpecialRegisters(s)

        let g = state.registers
        var r = kvm_regs()
        r.rax = g.rax; r.rbx = g.rbx; r.rcx = g.rcx; r.rdx = g.rdx; r.rsi = g.rsi; r.rdi = g.rdi; r.rsp = g.rsp; r.rbp = g.rbp
        r.r8 = g.r8; r.r9 = g.r9; r.r10 = g.r10; r.r11 = g.r11; r.r12 = g.r12; r.r13 = g.r13; r.r14 = g.r14; r.r15 = g.r15
        r.rip = g.rip; r.rflags = g.rflags
        try setRegisters(r)

        try setFPU(try Self.value(kvm_fpu(), from: state.fpu, what: "FPU"))
        try setMSRs(state.msrs.map { ($0.index, $0.value) })
        try setLocalAPIC(try Self.value(kvm_lapic_state(), from: state.localAPIC, what: "local APIC"))
        try setEvents(try Self.value(kvm_vcpu_events(), from: state.events, what: "vCPU events"))
        try setMPState(state.mpState)
    }

    static func bytes<T>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value) { Array($0) }
    }

    static func value<T>(_ empty: T, from bytes: [UInt8], what: String) throws -> T {
        guard bytes.count == MemoryLayout<T>.size else {
            throw VCPUStateError(message: "\(what) block is \(bytes.count) bytes, KVM expects \(MemoryLayout<T>.size)")
        }
        var value = empty
        withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes) }
        return value
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
