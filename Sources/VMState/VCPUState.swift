import CKVM
import KVM

/// Everything KVM holds for one vCPU, as plain `Codable` data: the value a
/// snapshot writes and a restore (or migration target) rebuilds a vCPU from.
/// Registers, CPUID, XCRs, debug registers and MSRs are spelled out; KVM's
/// larger opaque blocks (FPU, XSAVE, local APIC, pending events) are kept as
/// their exact bytes and size-checked before anything is applied.
///
/// Version 2 added `cpuid`, `xsave`, `xcrs`, `debugRegisters` and `tscKHz`; a
/// version-1 value decodes with those empty (see `init(from:)`).
public struct VCPUState: Codable, Equatable, Sendable {
    public static let version = 2

    public struct Registers: Codable, Equatable, Sendable {
        public var rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp: UInt64
        public var r8, r9, r10, r11, r12, r13, r14, r15: UInt64
        public var rip, rflags: UInt64
    }

    public struct Segment: Codable, Equatable, Sendable {
        public var base: UInt64
        public var limit: UInt32
        public var selector: UInt16
        public var type, present, dpl, db, s, l, g, avl, unusable: UInt8
    }

    public struct SpecialRegisters: Codable, Equatable, Sendable {
        public var cs, ds, es, fs, gs, ss, tr, ldt: Segment
        public var gdtBase: UInt64, gdtLimit: UInt16
        public var idtBase: UInt64, idtLimit: UInt16
        public var cr0, cr2, cr3, cr4, cr8, efer, apicBase: UInt64
        public var interruptBitmap: [UInt64]
    }

    public struct MSR: Codable, Equatable, Sendable {
        public var index: UInt32
        public var value: UInt64
    }

    /// One `kvm_cpuid_entry2`: the leaf (`function`), subleaf (`index`) and the
    /// four result registers the guest sees.
    public struct CPUIDEntry: Codable, Equatable, Sendable {
        public var function, index, flags: UInt32
        public var eax, ebx, ecx, edx: UInt32
    }

    /// An extended control register (XCR0 is the one x86 has today).
    public struct XCR: Codable, Equatable, Sendable {
        public var index: UInt32
        public var value: UInt64
    }

    public struct DebugRegisters: Codable, Equatable, Sendable {
        /// DR0–DR3.
        public var db: [UInt64]
        public var dr6, dr7: UInt64
        public var flags: UInt64
    }

    /// The layout version this value was written with (`VCPUState.version` when saved here).
    public var formatVersion: Int
    public var id: Int
    public var registers: Registers
    public var specialRegisters: SpecialRegisters
    /// In the order read; IA32_TSC_DEADLINE is written last on restore whatever its place.
    public var msrs: [MSR]
    public var mpState: UInt32
    /// `kvm_fpu`: applied only when there is no XSAVE area (XSAVE holds the same state and more).
    public var fpu: [UInt8]
    /// `kvm_lapic_state` (1 KiB of APIC registers).
    public var localAPIC: [UInt8]
    /// `kvm_vcpu_events`: pending exceptions, interrupts, NMIs, SMIs.
    public var events: [UInt8]
    /// The table from KVM_GET_CPUID2; empty when none was set.
    public var cpuid: [CPUIDEntry]
    /// The XSAVE area (`struct kvm_xsave`, 4096 bytes, or KVM_CAP_XSAVE2's size); empty when not saved.
    public var xsave: [UInt8]
    public var xcrs: [XCR]
    public var debugRegisters: DebugRegisters?
    /// The guest TSC frequency; nil where KVM could not tell (unstable host TSC).
    public var tscKHz: UInt32?

    enum CodingKeys: String, CodingKey {
        case formatVersion, id, registers, specialRegisters, msrs, mpState, fpu, localAPIC, events
        case cpuid, xsave, xcrs, debugRegisters, tscKHz
    }

    init(id: Int, registers: Registers, specialRegisters: SpecialRegisters, msrs: [MSR], mpState: UInt32,
         fpu: [UInt8], localAPIC: [UInt8], events: [UInt8], cpuid: [CPUIDEntry], xsave: [UInt8],
         xcrs: [XCR], debugRegisters: DebugRegisters?, tscKHz: UInt32?) {
        self.formatVersion = VCPUState.version
        self.id = id; self.registers = registers; self.specialRegisters = specialRegisters
        self.msrs = msrs; self.mpState = mpState; self.fpu = fpu; self.localAPIC = localAPIC; self.events = events
        self.cpuid = cpuid; self.xsave = xsave; self.xcrs = xcrs; self.debugRegisters = debugRegisters
        self.tscKHz = tscKHz
    }

    /// Version 1 had no `formatVersion` and none of the version-2 fields: they
    /// decode as absent. A version newer than this build's is refused, since
    /// its meaning is unknown here.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        formatVersion = try c.decodeIfPresent(Int.self, forKey: .formatVersion) ?? 1
        guard (1...VCPUState.version).contains(formatVersion) else {
            throw DecodingError.dataCorruptedError(forKey: .formatVersion, in: c,
                debugDescription: "vCPU state version \(formatVersion); this build reads 1...\(VCPUState.version)")
        }
        id = try c.decode(Int.self, forKey: .id)
        registers = try c.decode(Registers.self, forKey: .registers)
        specialRegisters = try c.decode(SpecialRegisters.self, forKey: .specialRegisters)
        msrs = try c.decode([MSR].self, forKey: .msrs)
        mpState = try c.decode(UInt32.self, forKey: .mpState)
        fpu = try c.decode([UInt8].self, forKey: .fpu)
        localAPIC = try c.decode([UInt8].self, forKey: .localAPIC)
        events = try c.decode([UInt8].self, forKey: .events)
        cpuid = try c.decodeIfPresent([CPUIDEntry].self, forKey: .cpuid) ?? []
        xsave = try c.decodeIfPresent([UInt8].self, forKey: .xsave) ?? []
        xcrs = try c.decodeIfPresent([XCR].self, forKey: .xcrs) ?? []
        debugRegisters = try c.decodeIfPresent(DebugRegisters.self, forKey: .debugRegisters)
        tscKHz = try c.decodeIfPresent(UInt32.self, forKey: .tscKHz)
    }
}

/// Why a saved vCPU state cannot be applied.
public struct VCPUStateError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { "invalid vCPU state: \(message)" }
}
