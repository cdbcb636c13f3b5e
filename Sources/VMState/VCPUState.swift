import CKVM
import KVM

/// Everything KVM holds for one vCPU, as plain `Codable` data: the value a
/// snapshot writes and a restore (or migration target) rebuilds a vCPU from.
/// Registers are spelled out; KVM's larger opaque blocks (FPU, local APIC,
/// pending events) are kept as their exact bytes, size-checked on restore.
public struct VCPUState: Codable, Equatable, Sendable {
    public static let version = 1

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

    public var id: Int
    public var registers: Registers
    public var specialRegisters: SpecialRegisters
    public var msrs: [MSR]
    public var mpState: UInt32
    public var fpu: [UInt8]
    public var localAPIC: [UInt8]
    public var events: [UInt8]

    public struct MSR: Codable, Equatable, Sendable {
        public var index: UInt32
        public var value: UInt64
    }
}

/// Why a saved vCPU state cannot be applied.
public struct VCPUStateError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { "invalid vCPU state: \(message)" }
}
