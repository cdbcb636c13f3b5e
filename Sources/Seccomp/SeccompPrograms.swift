import CSeccomp
import Posix
#if canImport(Glibc)
import Glibc
#endif

/// Compiled filters, made ahead of the moment they are loaded. `prepare`
/// compiles the roles once (set-up time, before the VM is waited for), and
/// `SeccompFilter.install(_:mode:)` then only loads the ready program: one
/// seccomp(2) call, and every vCPU thread loads the same program. (Compiling
/// costs microseconds since `SeccompCompiler` replaced libseccomp's compiler,
/// which took about a millisecond for the baseline; a migrated-in VM paid that
/// between the source's `commit` and its guest running again.)
enum SeccompPrograms {
    // Sound because: filled under the mutex; a program, once stored, is never changed.
    // One slot per (role, mode), not a Dictionary: a dictionary's first use built its
    // generic metadata and conformances at start-up (0.4 M instructions).
    private static let programs = Lock<[[sock_filter]?]>(Array(repeating: nil, count: slotCount))

    private static let slotCount = SeccompRole.allCases.count * SeccompMode.allCases.count

    private static func slot(_ role: SeccompRole, _ mode: SeccompMode) -> Int {
        SeccompRole.allCases.firstIndex(of: role)! * SeccompMode.allCases.count + SeccompMode.allCases.firstIndex(of: mode)!
    }

    static func program(_ role: SeccompRole, mode: SeccompMode) -> [sock_filter]? {
        programs.withLock { $0[slot(role, mode)] }
    }

    static func store(_ program: [sock_filter], role: SeccompRole, mode: SeccompMode) {
        programs.withLock { $0[slot(role, mode)] = program }
    }

    /// Loads a compiled program on the calling thread (on all threads with `tsync`).
    static func load(_ program: [sock_filter], role: SeccompRole, tsync: Bool) throws {
        let rc = program.withUnsafeBufferPointer { cseccomp_load_program($0.baseAddress, $0.count, tsync ? 1 : 0) }
        guard rc == 0 else {
            throw SeccompError("seccomp: loading the \(role) filter failed: \(String(cString: strerror(-rc))) (errno \(-rc))")
        }
    }
}
