import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// The system calls (by name) and ioctl requests one role may make. The lists
/// were found by tracing test guests, Linux boots, the API (pause, resume,
/// snapshot, reboot) and SIGTERM teardowns with `strace -f` and the filters in
/// `log` mode; docs/security.md explains every entry.
public struct SeccompAllowList: Sendable {
    public var systemCalls: [String]
    /// Calls that fail with EACCES instead of ending the process (see `refusedOpen`).
    public var refused: [String]
    /// ioctl requests allowed on any descriptor.
    public var ioctls: [UInt32]
    /// ioctl requests allowed on one descriptor only (the terminal on stdin).
    public var ioctlsOnDescriptor: [(Int32, UInt32)]

    public init(systemCalls: [String], refused: [String] = [], ioctls: [UInt32] = [],
                ioctlsOnDescriptor: [(Int32, UInt32)] = []) {
        self.systemCalls = systemCalls
        self.refused = refused
        self.ioctls = ioctls
        self.ioctlsOnDescriptor = ioctlsOnDescriptor
    }

    public static func forRole(_ role: SeccompRole) -> SeccompAllowList {
        switch role {
        case .process: return process
        case .main: return main
        case .vcpu: return vcpu
        case .events: return events
        case .diskIO: return diskIO
        case .api: return api
        case .migration: return migration
        }
    }

    /// What any Swift thread needs: the allocator, locks, signals, log lines on
    /// stderr (with a local-time stamp), sleeping, ending the thread or the process.
    static let runtime = [
        "brk", "mmap", "munmap", "mremap", "mprotect", "madvise",  // malloc and Swift's allocator
        "futex",                                                  // locks and conditions (NSLock, NSCondition, Mutex)
        "rt_sigprocmask", "rt_sigreturn", "sigaltstack",          // signal masks; returning from the kick handler
        "write", "writev",                                        // log lines on stderr, guest console on stdout
        "newfstatat", "fstat",                                    // localtime_r checks /etc/localtime; stdio's first write
        "clock_gettime", "clock_nanosleep", "nanosleep",          // clocks (when the vDSO is not used), usleep
        "sched_yield", "gettid", "getpid",
        // glibc's malloc sizes its arena limit from the CPU count (get_nprocs reads the
        // affinity mask) the first time a thread needs an arena of its own, which under
        // contention can come after the filters are on (TeardownTests on a busy host).
        "sched_getaffinity",
        "exit", "exit_group", "restart_syscall",
    ]

    /// glibc re-reads /etc/localtime for a log line's time stamp when the file
    /// changed (a tzdata upgrade): opening it fails instead of killing the VMM, and
    /// the stamp stays in the old zone. No narrow role opens anything else.
    static let refusedOpen = ["open", "openat"]

    /// Put the terminal back from a crash or a SIGSYS handler: tcsetattr on stdin.
    static let terminalRestore: [(Int32, UInt32)] = [(STDIN_FILENO, UInt32(TCSETS))]

    private static func requests(_ values: [UInt]) -> [UInt32] { values.map { UInt32(truncatingIfNeeded: $0) } }

    /// vCPU: KVM_RUN, and what MMIO/PIO exits do on this thread (signal eventfds,
    /// start watching a queue's eventfd, print the UART's output, log, read
    /// registers for a crash report).
    static let vcpu = SeccompAllowList(
        systemCalls: runtime + [
            "read",       // eventfd reads in device callbacks
            "epoll_ctl",  // a driver setting a queue ready (or resetting it) on the MMIO transport
            "poll",       // the UART's output waiting for room on a non-blocking stdout (EAGAIN)
        ],
        refused: refusedOpen,
        // TUNSETOFFLOAD: the guest acknowledging virtio-net features sets the TAP's offloads.
        ioctls: requests([CKVM_RUN, CKVM_GET_REGS, CKVM_GET_SREGS, CKVM_TUNSETOFFLOAD]) + [UInt32(TCGETS)],
        ioctlsOnDescriptor: terminalRestore)

    /// Device event loop: epoll, eventfds, virtqueues in guest RAM, disk I/O
    /// (the synchronous path: qcow2 metadata, flush, discard; data transfers are
    /// queued to the disk I/O threads), TAP, stdin.
    static let events = SeccompAllowList(
        systemCalls: runtime + [
            "epoll_wait", "epoll_pwait", "epoll_ctl",
            "read", "readv", "pread64", "preadv", "preadv2",
            "pwrite64", "pwritev", "pwritev2",
            "fsync", "fdatasync", "fallocate", "ftruncate", "lseek", "fcntl",
            "io_uring_enter",  // virtio-net transmit: a batch of frames to the TAP (the ring can only writev)
        ],
        refused: refusedOpen,
        ioctls: requests([CKVM_TUNSETOFFLOAD]) + [UInt32(TCGETS)],  // a virtio-net reset puts the offloads back
        ioctlsOnDescriptor: terminalRestore)

    /// A disk's I/O thread: only the data transfers (the runtime's list covers its
    /// locks, the eventfd write and the thread's exit).
    static let diskIO = SeccompAllowList(systemCalls: runtime + ["preadv", "pwritev"], refused: refusedOpen)

    /// The API server's NIO thread and the control work it hands to libdispatch
    /// (whose worker threads it creates, so they inherit this filter): HTTP on
    /// accepted connections; pause/resume (kicks, KVM_RUN to complete an I/O
    /// instruction, kvmclock); snapshot writing (files, KVM state reads); and
    /// `vm.send-migration`, which runs there too: the TCP connection to the
    /// destination, the Noise handshake's random ephemeral key, dirty logging
    /// (memory slot flags, KVM_GET/CLEAR_DIRTY_LOG, manual protect) and the
    /// auto-converge thread.
    static let api = SeccompAllowList(
        systemCalls: runtime + [
            // NIO
            "epoll_wait", "epoll_pwait", "epoll_ctl", "timerfd_settime", "eventfd2", "read", "readv",
            "accept4", "getsockname", "getpeername", "getsockopt", "setsockopt", "shutdown", "close", "fcntl",
            // libdispatch starting its workers (threads only: CLONE_THREAD in the same process)
            "clone", "clone3", "set_robust_list", "rseq", "prctl", "setpriority", "epoll_create1", "timerfd_create",
            // pause, resume, stop
            "tgkill",
            // snapshot files (FoundationEssentials' FileManager and SnapshotWriter), and cleaning up after a failed one
            "openat", "mkdir", "mkdirat", "statx", "lseek", "pwrite64", "pread64", "preadv2", "ftruncate", "fsync",
            "fdatasync", "rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "getdents64",
            "readlink", "access", "faccessat", "faccessat2", "getcwd",
            // vm.send-migration: its connection (to an IP address: the API refuses host names), handshake, stream
            "socket", "connect", "sendto", "sendmsg", "recvfrom", "recvmsg", "poll", "ppoll", "getrandom",
            // ... and a disk sent without shared storage: its requests in flight are completed
            // (by its I/O threads) before the clusters they marked are read; reading through
            // the qcow2 layer may write back its metadata, which punches clusters freed since
            "fallocate",
        ],
        // vm.restore builds its VM here: its network cards write frame by frame (see `noNewRings`).
        refused: noNewRings,
        ioctls: requests([
            CKVM_GET_DIRTY_LOG, CKVM_CLEAR_DIRTY_LOG, CKVM_SET_USER_MEMORY_REGION, CKVM_ENABLE_CAP, CKVM_GET_SUPPORTED_CPUID,
            CKVM_RUN, CKVM_KVMCLOCK_CTRL, CKVM_CHECK_EXTENSION, CKVM_GET_TSC_KHZ, CKVM_GET_MSR_INDEX_LIST,
            CKVM_GET_REGS, CKVM_GET_SREGS, CKVM_GET_FPU, CKVM_GET_MSRS, CKVM_GET_LAPIC, CKVM_GET_MP_STATE,
            CKVM_GET_VCPU_EVENTS, CKVM_GET_XCRS, CKVM_GET_XSAVE, CKVM_GET_DEBUGREGS, CKVM_GET_CPUID2,
            CKVM_GET_CLOCK, CKVM_GET_IRQCHIP, CKVM_GET_PIT2,
        ]) + [UInt32(TCGETS), ficlone],
        ioctlsOnDescriptor: terminalRestore)

    /// A new io_uring, or new files and operations for one, would let a thread do
    /// through the ring what its filter forbids (io_uring's operations are not
    /// system calls). Rings are made only during set-up, before any filter, and
    /// restricted there (`TapWriteRing`); after it creating one fails with EACCES,
    /// and a VM built then (vm.reboot, vm.restore) sends its frames one by one.
    static let noNewRings = ["io_uring_setup", "io_uring_register"]

    /// FICLONE: a snapshot's reflink of a disk's top layer (where the file system has them).
    static let ficlone: UInt32 = 0x4004_9409

    /// Main thread with no API (so no in-process reboot): waits for the stop event
    /// or a termination signal, then tears down: kicks and joins the threads,
    /// drains and flushes the disks, closes and unmaps everything, exits.
    static let main = SeccompAllowList(
        systemCalls: runtime + [
            "poll", "ppoll", "read", "close", "tgkill", "epoll_ctl", "rt_sigaction",
            "pwrite64", "pwritev", "pread64", "preadv", "preadv2",  // preadv2: a disk's inline reads (RWF_NOWAIT)
            "fsync", "fdatasync", "ftruncate", "fallocate", "lseek", "flock", "fcntl",
            "unlink",  // nothing now; the API socket's removal if main is ever narrowed with the API on
            "shutdown",  // a migrated-in VM's stream to its source, closed at teardown
        ],
        refused: refusedOpen,
        ioctls: [UInt32(TCGETS)],
        ioctlsOnDescriptor: terminalRestore)

    /// A thread of its own for migration, should one be split off: the sending side
    /// runs today on the API's control work (see `api`), the receiving side before
    /// any filter is loaded (`skiff run --incoming`, or the empty VMM's wait).
    static let migration = SeccompAllowList(systemCalls: runtime, refused: refusedOpen)

    /// The baseline for every thread: everything skiff does after set-up, including
    /// building a new VM in this process (`vm.reboot`) and starting its threads. It
    /// keeps out what skiff never does then: exec, ptrace, listening sockets (bind, listen),
    /// mounting, module loading, changing credentials, and the like.
    /// The union keeps the names the roles share more than once: the compiler
    /// merges them by number (a `Set` and a sort here cost 0.6 M instructions at start-up).
    static let process = SeccompAllowList(
        systemCalls: runtime + vcpu.systemCalls + events.systemCalls + diskIO.systemCalls + api.systemCalls + main.systemCalls + [
            "ioctl",  // every KVM, TUN and terminal request a VM build makes; the roles narrow it
            "clone", "clone3", "set_robust_list", "rseq", "prctl", "sched_getaffinity",  // new threads
            "seccomp",  // each new thread loads its role's filter on top of this one
            "rt_sigaction", "signalfd4", "eventfd2", "epoll_create1", "timerfd_create", "memfd_create",
            "open", "openat", "close", "dup", "dup3", "pipe2", "flock", "getrandom",
            "uname", "sysinfo", "prlimit64", "fchmod",
        ],
        refused: noNewRings)
}
