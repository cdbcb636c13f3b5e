import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// The system calls (by name) and ioctl requests one role may make. The lists
/// were found by tracing the whole test suite and Linux boots (strace -f with the
/// filters in `log` mode) and are explained call by call in docs/security.md.
public struct SeccompAllowList: Sendable {
    public var systemCalls: [String]
    /// ioctl requests allowed on any descriptor.
    public var ioctls: [UInt32]
    /// ioctl requests allowed on one descriptor only (the terminal on stdin).
    public var ioctlsOnDescriptor: [(Int32, UInt32)]

    public init(systemCalls: [String], ioctls: [UInt32] = [], ioctlsOnDescriptor: [(Int32, UInt32)] = []) {
        self.systemCalls = systemCalls
        self.ioctls = ioctls
        self.ioctlsOnDescriptor = ioctlsOnDescriptor
    }

    public static func forRole(_ role: SeccompRole) -> SeccompAllowList {
        switch role {
        case .process: return process
        case .main: return main
        case .vcpu: return vcpu
        case .events: return events
        case .api: return api
        case .migration: return migration
        }
    }

    /// What any Swift thread needs: the allocator, locks, signals, logging to
    /// stderr, sleeping, ending the thread or the process.
    static let runtime = [
        "brk", "mmap", "munmap", "mremap", "mprotect", "madvise",  // malloc and Swift's allocator
        "futex",                                                  // pthread mutexes and conditions (NSLock, NSCondition)
        "rt_sigprocmask", "rt_sigreturn", "sigaltstack",          // signal masks; returning from the kick handler
        "write", "writev",                                        // log lines on stderr, guest console on stdout
        "clock_gettime", "clock_nanosleep", "nanosleep",          // clocks (when the vDSO is not used), usleep
        "sched_yield", "gettid", "getpid",
        "exit", "exit_group", "restart_syscall",
    ]

    /// Put the terminal back from a crash or a SIGSYS handler: tcsetattr on stdin.
    static let terminalRestore: [(Int32, UInt32)] = [(STDIN_FILENO, UInt32(TCSETS))]

    /// vCPU: KVM_RUN, and what MMIO/PIO exits do on this thread (signal eventfds,
    /// log, print the UART's output, read registers for a crash report).
    static let vcpu = SeccompAllowList(
        systemCalls: runtime + [
            "read",              // eventfd reads in device callbacks
            "fstat", "newfstatat",  // stdio's first use of stdout
            "tgkill",            // kicking the other vCPUs on a stop from this one
        ],
        ioctls: [UInt32(truncatingIfNeeded: CKVM_RUN), UInt32(truncatingIfNeeded: CKVM_GET_REGS),
                 UInt32(truncatingIfNeeded: CKVM_GET_SREGS), UInt32(TCGETS)],
        ioctlsOnDescriptor: terminalRestore)

    /// Device event loop: epoll, eventfds, virtqueues in guest RAM, disk I/O
    /// (libaio and the synchronous path: qcow2 metadata, flush, discard), TAP.
    static let events = SeccompAllowList(
        systemCalls: runtime + [
            "epoll_wait", "epoll_pwait", "epoll_ctl",
            "read", "readv", "pread64", "preadv", "preadv2",
            "pwrite64", "pwritev", "pwritev2",
            "io_submit", "io_getevents", "io_pgetevents",
            "fsync", "fdatasync", "fallocate", "ftruncate", "lseek",
            "fstat", "newfstatat", "fcntl",
            "tgkill",
        ],
        ioctls: [UInt32(TCGETS)],
        ioctlsOnDescriptor: terminalRestore)

    /// API server thread and its control work: HTTP on accepted connections;
    /// pause/resume (kicks); snapshot writing (files, KVM state reads).
    static let api = SeccompAllowList(
        systemCalls: runtime + [
            "epoll_wait", "epoll_pwait", "epoll_ctl", "eventfd2", "timerfd_settime",
            "accept4", "read", "readv", "recvfrom", "recvmsg", "sendmsg", "sendto", "shutdown", "close",
            "getsockopt", "setsockopt", "getsockname", "getpeername", "fcntl",
            "tgkill",
            "openat", "mkdir", "mkdirat", "fstat", "newfstatat", "statx", "lseek", "pwrite64", "pread64",
            "ftruncate", "fsync", "fdatasync", "rename", "renameat", "renameat2", "unlink", "unlinkat",
            "rmdir", "getdents64", "getcwd", "readlink", "access", "faccessat", "faccessat2",
        ],
        ioctls: [
            CKVM_GET_REGS, CKVM_GET_SREGS, CKVM_GET_FPU, CKVM_GET_MSRS, CKVM_GET_LAPIC, CKVM_GET_MP_STATE,
            CKVM_GET_VCPU_EVENTS, CKVM_GET_XCRS, CKVM_GET_XSAVE, CKVM_GET_DEBUGREGS, CKVM_GET_CPUID2,
            CKVM_GET_CLOCK, CKVM_GET_IRQCHIP, CKVM_GET_PIT2, CKVM_GET_MSR_INDEX_LIST, CKVM_KVMCLOCK_CTRL,
        ].map { UInt32(truncatingIfNeeded: $0) } + [UInt32(TCGETS)],
        ioctlsOnDescriptor: terminalRestore)

    /// Main thread with no API (so no in-process reboot): waits for the stop event
    /// or a termination signal, then tears down.
    static let main = SeccompAllowList(
        systemCalls: runtime + [
            "poll", "ppoll", "read", "close", "tgkill",
            "io_getevents", "io_destroy", "pwrite64", "pwritev", "pread64", "preadv",
            "fsync", "fdatasync", "ftruncate", "fallocate", "lseek", "flock", "fcntl",
            "epoll_ctl", "rt_sigaction", "fstat", "newfstatat",
        ],
        ioctls: [UInt32(TCGETS)],
        ioctlsOnDescriptor: terminalRestore)

    /// Migration: not written yet. Its thread will need the socket calls to its peer
    /// (connect/accept, send/recv), reads of guest RAM (no call) and KVM_GET_DIRTY_LOG.
    static let migration = SeccompAllowList(systemCalls: runtime)

    /// The baseline for every thread: everything skiff does after set-up, including
    /// building a new VM in this process (`vm.reboot`) and starting its threads. It
    /// keeps out what skiff never does then: exec, ptrace, new sockets to the
    /// network, mounting, module loading, changing credentials, and the like.
    static let process = SeccompAllowList(
        systemCalls: Array(Set(runtime + vcpu.systemCalls + events.systemCalls + api.systemCalls + main.systemCalls + [
            "ioctl",  // every KVM, TUN and terminal request a VM build makes; the roles narrow it
            "clone", "clone3", "set_robust_list", "rseq", "prctl", "sched_getaffinity",  // new threads
            "rt_sigaction", "signalfd4", "eventfd2", "epoll_create1", "timerfd_create", "memfd_create",
            "open", "openat", "close", "dup", "dup2", "dup3", "pipe2", "flock", "readlink", "getrandom",
            "socket", "bind", "listen", "connect", "umask", "fchmod", "chmod",  // the API's unix socket
            "io_setup", "io_destroy", "uname", "sysinfo", "getrlimit", "prlimit64",
            "getuid", "geteuid", "getgid", "getegid",
        ])).sorted(),
        ioctlsOnDescriptor: [])
}
