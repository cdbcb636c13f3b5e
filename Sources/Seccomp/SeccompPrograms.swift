import CSeccomp
import Posix
#if canImport(Glibc)
import Glibc
#endif

/// Compiled filters, made ahead of the moment they are loaded. Building a
/// filter through libseccomp (rules, then the binary-tree program) takes about
/// a millisecond for the process baseline and a few hundred microseconds per
/// role, and every vCPU thread built its own copy; a migrated-in VM paid all of
/// that between the source's `commit` and its guest running again. `prepare`
/// compiles the roles once (set-up time, before the VM is waited for), and
/// `SeccompFilter.install(_:mode:)` then only loads the ready program: one
/// seccomp(2) call, the same program libseccomp would have loaded.
enum SeccompPrograms {
    struct Key: Hashable {
        let role: SeccompRole
        let mode: SeccompMode
    }

    // Sound because: filled under the mutex; a program, once stored, is never changed.
    private static let programs = Lock<[Key: [UInt8]]>([:])

    static func program(_ role: SeccompRole, mode: SeccompMode) -> [UInt8]? {
        programs.withLock { $0[Key(role: role, mode: mode)] }
    }

    static func store(_ program: [UInt8], role: SeccompRole, mode: SeccompMode) {
        programs.withLock { $0[Key(role: role, mode: mode)] = program }
    }

    /// The BPF program `ctx` compiles to.
    static func export(_ ctx: scmp_filter_ctx, role: SeccompRole) throws -> [UInt8] {
        var raw: UnsafeMutableRawPointer?
        var length = 0
        let rc = cseccomp_export(ctx, &raw, &length)
        guard rc == 0, let raw else {
            throw SeccompError("seccomp: compiling the \(role) filter failed: \(String(cString: strerror(-rc))) (errno \(-rc))")
        }
        defer { free(raw) }
        return Array(UnsafeRawBufferPointer(start: raw, count: length))
    }

    /// Loads a compiled program on the calling thread (on all threads with `tsync`).
    static func load(_ program: [UInt8], role: SeccompRole, tsync: Bool) throws {
        let rc = program.withUnsafeBytes { cseccomp_load_program($0.baseAddress, $0.count, tsync ? 1 : 0) }
        guard rc == 0 else {
            throw SeccompError("seccomp: loading the \(role) filter failed: \(String(cString: strerror(-rc))) (errno \(-rc))")
        }
    }
}
