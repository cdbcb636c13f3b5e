import CSeccomp
import XCTest

/// `struct seccomp_data` as a filter sees it: what one system call looks like.
struct SeccompCall {
    var nr: UInt32
    var arch: UInt32 = CSECCOMP_AUDIT_ARCH_X86_64
    var instructionPointer: UInt64 = 0x7f00_0000_1234
    var args: [UInt64] = [0, 0, 0, 0, 0, 0]

    /// The 32-bit word at byte `offset` (little-endian, as on x86-64), or nil
    /// where the kernel would refuse the load (unaligned, past the 64 bytes).
    func word(at offset: UInt32) -> UInt32? {
        guard offset % 4 == 0 else { return nil }
        switch offset {
        case 0: return nr
        case 4: return arch
        case 8, 12: return UInt32(truncatingIfNeeded: instructionPointer >> (offset == 8 ? 0 : 32))
        case 16..<64:
            let arg = args[Int(offset - 16) / 8]
            return UInt32(truncatingIfNeeded: (offset % 8 == 0) ? arg : arg >> 32)
        default: return nil
        }
    }
}

/// A classic BPF interpreter for the instructions a seccomp filter may use, to run
/// the compiled programs in the tests (a filter loaded for real would filter the
/// test process). It also checks what the kernel's checker would: every jump lands
/// inside the program, loads are aligned and within `struct seccomp_data`, and the
/// last instruction returns.
enum BPFInterpreter {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Checks `program` as the kernel does before loading it (the subset of it
    /// our programs and libseccomp's use).
    static func check(_ program: [sock_filter]) throws {
        guard (1...Int(CSECCOMP_MAX_INSTRUCTIONS)).contains(program.count) else {
            throw Failure(description: "\(program.count) instructions")
        }
        for (pc, instruction) in program.enumerated() {
            let code = Int32(instruction.code)
            switch code {
            case BPF_LD | BPF_W | BPF_ABS:
                guard instruction.k % 4 == 0, instruction.k < 64 else { throw Failure(description: "load of \(instruction.k) at \(pc)") }
            case BPF_LD | BPF_IMM, BPF_ALU | BPF_AND | BPF_K, BPF_RET | BPF_K:
                break
            case BPF_JMP | BPF_JA:
                guard pc + 1 + Int(instruction.k) < program.count else { throw Failure(description: "JA out of the program at \(pc)") }
            case BPF_JMP | BPF_JEQ | BPF_K, BPF_JMP | BPF_JGT | BPF_K, BPF_JMP | BPF_JGE | BPF_K, BPF_JMP | BPF_JSET | BPF_K:
                guard pc + 1 + Int(max(instruction.jt, instruction.jf)) < program.count else {
                    throw Failure(description: "jump out of the program at \(pc)")
                }
            default:
                throw Failure(description: "instruction 0x\(String(code, radix: 16)) at \(pc) is not one this interpreter knows")
            }
        }
        guard Int32(program.last!.code) == BPF_RET | BPF_K else { throw Failure(description: "the last instruction does not return") }
    }

    /// What `program` returns for `call`, and how many instructions it ran.
    static func run(_ program: [sock_filter], on call: SeccompCall) throws -> (action: UInt32, steps: Int) {
        var a: UInt32 = 0
        var pc = 0
        var steps = 0
        while pc < program.count {
            let instruction = program[pc]
            steps += 1
            pc += 1
            switch Int32(instruction.code) {
            case BPF_LD | BPF_W | BPF_ABS:
                guard let word = call.word(at: instruction.k) else { throw Failure(description: "bad load at \(pc - 1)") }
                a = word
            case BPF_LD | BPF_IMM:
                a = instruction.k
            case BPF_ALU | BPF_AND | BPF_K:
                a &= instruction.k
            case BPF_RET | BPF_K:
                return (instruction.k, steps)
            case BPF_JMP | BPF_JA:
                pc += Int(instruction.k)
            case let code:
                let taken: Bool
                switch code {
                case BPF_JMP | BPF_JEQ | BPF_K: taken = a == instruction.k
                case BPF_JMP | BPF_JGT | BPF_K: taken = a > instruction.k
                case BPF_JMP | BPF_JGE | BPF_K: taken = a >= instruction.k
                case BPF_JMP | BPF_JSET | BPF_K: taken = a & instruction.k != 0
                default: throw Failure(description: "unknown instruction 0x\(String(code, radix: 16)) at \(pc - 1)")
                }
                pc += Int(taken ? instruction.jt : instruction.jf)
            }
        }
        throw Failure(description: "ran off the end of the program")
    }
}
