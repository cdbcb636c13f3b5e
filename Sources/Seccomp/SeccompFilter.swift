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

/// Loads a role's allow-list as a seccomp filter (through libseccomp) on the
/// calling thread — or, for `.process`, on every thread of the process at once.
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
    /// a later `install(_:mode:)` of one of them only loads it: the work moves
    /// out of the moment a VM starts (a migration's switch-over). Call before
    /// any filter is loaded (it uses a memfd). `.off` does nothing.
    public static func prepare(_ roles: [SeccompRole], mode: SeccompMode) throws {
        guard mode != .off else { return }
        cseccomp_install_trap_handler()
        for role in roles where SeccompPrograms.program(role, mode: mode) == nil {
            let ctx = try build(role, allowList: SeccompAllowList.forRole(role), mode: mode)
            defer { seccomp_release(ctx) }
            SeccompPrograms.store(try SeccompPrograms.export(ctx, role: role), role: role, mode: mode)
        }
    }

    /// Loads `allowList` as `role`'s filter.
    public static func install(_ role: SeccompRole, allowList: SeccompAllowList, mode: SeccompMode) throws {
        guard mode != .off else { return }
        cseccomp_install_trap_handler()
        let ctx = try build(role, allowList: allowList, mode: mode)
        defer { seccomp_release(ctx) }
        if role == .process {
            // All threads, including NIO's and libdispatch's, which skiff does not start itself.
            try check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1), "seccomp: synchronising threads")
        }
        try check(seccomp_load(ctx), "seccomp: loading the \(role) filter")
        cseccomp_set_thread_role(roleName(role))
    }

    /// How many BPF instructions `prepare` compiled for `role` (nil: not prepared).
    public static func preparedInstructions(_ role: SeccompRole, mode: SeccompMode) -> Int? {
        SeccompPrograms.program(role, mode: mode).map { $0.count / 8 }  // struct sock_filter: 8 bytes
    }

    /// Builds `role`'s filter without loading it: throws what `install` would
    /// (an unknown system call name, a rule libseccomp refuses). For tests.
    public static func validate(_ role: SeccompRole) throws {
        seccomp_release(try build(role, allowList: SeccompAllowList.forRole(role), mode: .on))
    }

    private static func build(_ role: SeccompRole, allowList: SeccompAllowList, mode: SeccompMode) throws -> scmp_filter_ctx {
        let defaultAction = mode == .log ? UInt32(SCMP_ACT_LOG) : UInt32(SCMP_ACT_TRAP)
        guard let ctx = seccomp_init(defaultAction) else { throw SeccompError("seccomp_init failed") }
        do {
            // A binary tree rather than a linear list: fewer BPF instructions per system call.
            try check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2), "seccomp: choosing the binary-tree filter")
            for name in allowList.systemCalls {
                let nr = seccomp_syscall_resolve_name(name)
                guard nr != __NR_SCMP_ERROR else {
                    throw SeccompError("seccomp: unknown system call \(name) in the \(role) list")
                }
                try check(cseccomp_allow(ctx, nr), "seccomp: allowing \(name)")
            }
            for name in allowList.refused {
                let nr = seccomp_syscall_resolve_name(name)
                guard nr != __NR_SCMP_ERROR else {
                    throw SeccompError("seccomp: unknown system call \(name) in the \(role) list")
                }
                try check(cseccomp_refuse(ctx, nr, EACCES), "seccomp: refusing \(name)")
            }
            for request in allowList.ioctls {
                try check(cseccomp_allow_ioctl(ctx, request), "seccomp: allowing ioctl 0x\(String(request, radix: 16))")
            }
            for (fd, request) in allowList.ioctlsOnDescriptor {
                try check(cseccomp_allow_ioctl_on(ctx, fd, request),
                          "seccomp: allowing ioctl(\(fd), 0x\(String(request, radix: 16)))")
            }
        } catch {
            seccomp_release(ctx)
            throw error
        }
        return ctx
    }

    /// The role's name as a C string that lives for the process (the handler reads it).
    private static func roleName(_ role: SeccompRole) -> UnsafePointer<CChar> {
        UnsafePointer(names[SeccompRole.allCases.firstIndex(of: role)!])
    }

    // Sound because: built once (lazy static init is thread-safe), never changed, and the strings are only read.
    nonisolated(unsafe) private static let names: [UnsafeMutablePointer<CChar>] = SeccompRole.allCases.map {
        strdup($0.rawValue)!
    }

    private static func check(_ result: Int32, _ what: String) throws {
        guard result == 0 else {
            throw SeccompError("\(what) failed: \(String(cString: strerror(-result))) (errno \(-result))")
        }
    }
}
