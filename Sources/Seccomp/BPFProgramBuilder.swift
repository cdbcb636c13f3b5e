import CSeccomp

/// Builds a classic BPF program back to front. Every jump in a seccomp program
/// goes forward, so building from the end means a jump's target is always placed
/// before the jump is added, and its distance is known at once: no fix-ups.
/// A conditional jump reaches at most 255 instructions ahead (8-bit offsets);
/// a farther target gets an unconditional `JA` (32-bit offset) next to the jump.
struct BPFProgramBuilder {
    /// An instruction's place, counted from the program's end: it stays the same
    /// while instructions are added in front.
    struct Label: Equatable {
        fileprivate let fromEnd: Int
    }

    private var reversed: [sock_filter] = []
    /// The latest `ret` of each action, reused while it is near (see `ret`).
    private var returns: [(action: UInt32, label: Label)] = []

    /// The program, first instruction first.
    var instructions: [sock_filter] { reversed.reversed() }
    var count: Int { reversed.count }

    /// Returns `action`. A `ret` has no successor, so one already in the program
    /// serves every jump that can reach it; a new copy is added only when it is
    /// far, which saves a `JA` on the way.
    mutating func ret(_ action: UInt32) -> Label {
        if let known = returns.last(where: { $0.action == action }), offset(to: known.label) < 128 {
            return known.label
        }
        let label = prepend(BPFProgramBuilder.instruction(BPF_RET | BPF_K, k: action))
        returns.append((action, label))
        return label
    }

    /// Loads the 32-bit word at byte `field` of `struct seccomp_data` into A,
    /// then goes on at `next`.
    mutating func load(_ field: UInt32, then next: Label) -> Label {
        if offset(to: next) != 0 { _ = always(next) }  // a load falls through to the next instruction
        return prepend(BPFProgramBuilder.instruction(BPF_LD | BPF_W | BPF_ABS, k: field))
    }

    /// Compares A with `value` (`BPF_JEQ`, `BPF_JGE`, `BPF_JGT`) and goes on at
    /// `ifTrue` or `ifFalse`.
    mutating func jump(_ comparison: Int32, _ value: UInt32, ifTrue: Label, ifFalse: Label) -> Label {
        var onTrue = ifTrue
        var onFalse = ifFalse
        // A trampoline for one side moves the other one instruction farther: check again.
        while offset(to: onTrue) > Int(UInt8.max) || offset(to: onFalse) > Int(UInt8.max) {
            if offset(to: onTrue) > Int(UInt8.max) {
                onTrue = always(onTrue)
            } else {
                onFalse = always(onFalse)
            }
        }
        return prepend(sock_filter(code: UInt16(BPF_JMP | comparison | BPF_K),
                                   jt: UInt8(offset(to: onTrue)), jf: UInt8(offset(to: onFalse)), k: value))
    }

    /// An unconditional jump to `target`.
    private mutating func always(_ target: Label) -> Label {
        prepend(BPFProgramBuilder.instruction(BPF_JMP | BPF_JA, k: UInt32(offset(to: target))))
    }

    /// How many instructions an instruction added now skips to reach `target`
    /// (0: the next one).
    private func offset(to target: Label) -> Int {
        reversed.count - 1 - target.fromEnd
    }

    private mutating func prepend(_ instruction: sock_filter) -> Label {
        reversed.append(instruction)
        return Label(fromEnd: reversed.count - 1)
    }

    private static func instruction(_ code: Int32, k: UInt32) -> sock_filter {
        sock_filter(code: UInt16(code), jt: 0, jf: 0, k: k)
    }
}
