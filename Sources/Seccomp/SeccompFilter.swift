import CSeccomp
#if canImport(Glibc)
import Glibc
#endif

/// Why a filter could not be built or loaded.
public struct SeccompError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
    init(_ message: String) { self.message = message }
}

/// Loads a role's allow-list as a seccomp filter (compiled by `SeccompCompiler`)
/// on the calling thread — or, for `.process`, on every thread of the process at once.
///
/// Filters stack: a thread created later inherits its creator's filters, and a
/// thread that loads its role's filter on top of the baseline may make only the
/// calls both allow. A call outside the list raises SIGSYS (SECCOMP_RET_TRAP),
/// whose handler prints "skiff: seccomp: thread ROLE made forbidden system call
/// NAME (nr)" and ends the process with status 159 (128 + SIGSYS).
public enum SeccompFilter {
    /// Restores the terminal (or whatever the caller needs) before the handler
    /// exits; must be async-signal-safe. Set before the first `install`.
    public static func setBeforeExit(_ hook: @convention(c) () -> Void) {
        cseccomp_set_before_exit(hook)
    }

    /// Loads `role`'s filter. `.off` does nothing. A program `prepare` compiled
    /// is loaded as it is; otherwise the filter is built here.
    public static func install(_ role: SeccompRole, mode: SeccompMode) throws {
        guard mode != .off else { return }
        guard let program = SeccompPrograms.program(role, mode: mode) else {
            try install(role, allowList: SeccompAllowList.forRole(role), mode: mode)
            return
        }
        cseccomp_install_trap_handler()
        // All threads for `.process`, as below.
        try SeccompPrograms.load(program, role: role, tsync: role == .process)
        cseccomp_set_thread_role(roleName(role))
    }

    /// Compiles `roles`' filters now (and readies the SIGSYS handler), so that
    /// a later `install(_:mode:)` of one of them only loads it, and every thread
    /// of a role loads the same program. `.off` does nothing.
    public static func prepare(_ roles: [SeccompRole], mode: SeccompMode) throws {
        guard mode != .off else { return }
        cseccomp_install_trap_handler()
        for role in roles where SeccompPrograms.program(role, mode: mode) == nil {
            SeccompPrograms.store(try SeccompCompiler.compile(SeccompAllowList.forRole(role), role: role, mode: mode),
                                  role: role, mode: mode)
        }
    }

    /// Loads `allowList` as `role`'s filter.
    public static func install(_ role: SeccompRole, allowList: SeccompAllowList, mode: SeccompMode) throws {
        guard mode != .off else { return }
        let program = try SeccompCompiler.compile(allowList, role: role, mode: mode)
        cseccomp_install_trap_handler()
        // All threads for `.process`, including NIO's and libdispatch's, which skiff does not start itself.
        try SeccompPrograms.load(program, role: role, tsync: role == .process)
        cseccomp_set_thread_role(roleName(role))
    }

    /// How many BPF instructions `prepare` compiled for `role` (nil: not prepared).
    public static func preparedInstructions(_ role: SeccompRole, mode: SeccompMode) -> Int? {
        SeccompPrograms.program(role, mode: mode)?.count
    }

    /// Compiles `role`'s filter without loading it: throws what `install` would
    /// (an unknown system call name, a call both allowed and refused). For tests.
    public static func validate(_ role: SeccompRole) throws {
        _ = try program(role, mode: .on)
    }

    /// `role`'s filter as `install` would load it, one `struct sock_filter` (8
    /// bytes: code, jt, jf, k) per instruction. For tests, which run it.
    public static func program(_ role: SeccompRole, mode: SeccompMode) throws -> [sock_filter] {
        try SeccompCompiler.compile(SeccompAllowList.forRole(role), role: role, mode: mode)
    }

    /// `allowList` compiled as `install(_:allowList:mode:)` would load it. For tests.
    public static func program(_ allowList: SeccompAllowList, mode: SeccompMode) throws -> [sock_filter] {
        try SeccompCompiler.compile(allowList, role: .process, mode: mode)
    }

    /// The role's name as a C string that lives for the process (the handler reads it).
    private static func roleName(_ role: SeccompRole) -> UnsafePointer<CChar> {
        UnsafePointer(names[SeccompRole.allCases.firstIndex(of: role)!])
    }

    // Sound because: built once (lazy static init is thread-safe), never changed, and the strings are only read.
    nonisolated(unsafe) private static let names: [UnsafeMutablePointer<CChar>] = SeccompRole.allCases.map {
        strdup($0.rawValue)!
    }
}
