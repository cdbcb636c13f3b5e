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
    struct Key: Hashable {
        let role: SeccompRole
        let mode: SeccompMode
    }

    // Sound because: filled under the mutex; a program, once stored, is never changed.
    private static let programs = Lock<[Key: [sock_filter]]>([:])

    static func program(_ role: SeccompRole, mode: SeccompMode) -> [sock_filter]? {
        programs.withLock { $0[Key(role: role, mode: mode)] }
    }

    static func store(_ program: [sock_filter], role: SeccompRole, mode: SeccompMode) {
        programs.withLock { $0[Key(role: role, mode: mode)] = program }
    }

    /// Loads a compiled program on the calling thread (on all threads with `tsync`).
    static func load(_ program: [sock_filter], role: SeccompRole, tsync: Bool) throws {
        let rc = program.withUnsafeBufferPointer { cseccomp_load_program($0.baseAddress, $0.count, tsync ? 1 : 0) }
        guard rc == 0 else {
            throw SeccompError("seccomp: loading the \(role) filter failed: \(String(cString: strerror(-rc))) (errno \(-rc))")
        }
    }
}
