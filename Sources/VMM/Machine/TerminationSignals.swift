import CKVM
import KVM
#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM, SIGINT, SIGHUP and SIGQUIT as readable events instead of handlers,
/// so a termination request ends the VM through the same orderly teardown as a
/// power-off (requests drained, images flushed, threads joined, terminal back).
///
/// `init` blocks them in the calling thread — call it before any other thread
/// starts (VMM, API server), so every thread inherits the block and only the
/// signalfd sees them.
/// After the first one, `escalate()` lets a second one end the process at once
/// (terminal restored), in case the teardown itself hangs.
public final class TerminationSignals {
    static let numbers: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]
    let fileDescriptor: Int32

    public init() throws {
        var set = sigset_t()
        sigemptyset(&set)
        for s in Self.numbers { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        // A parent may have left them ignored: an ignored SIGTERM would never arrive.
        for s in Self.numbers { Glibc.signal(s, SIG_DFL) }
        Glibc.signal(SIGPIPE, SIG_IGN)  // a closed stdout must not kill the VM mid-write
        let fd = signalfd(-1, &set, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        guard fd >= 0 else { throw KVMError("signalfd", errno: errno) }
        fileDescriptor = fd
    }

    deinit { close(fileDescriptor) }

    /// The signal waiting on the signalfd, if any.
    public func take() -> Int32? {
        var info = signalfd_siginfo()
        let n = read(fileDescriptor, &info, MemoryLayout<signalfd_siginfo>.size)
        return n == MemoryLayout<signalfd_siginfo>.size ? Int32(info.ssi_signo) : nil
    }

    /// Blocks until a termination signal arrives (returned) or `fd` is readable (nil).
    public func wait(orReadable fd: Int32) -> Int32? {
        var fds = [pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0), pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        while true {
            if let signal = take() { return signal }
            let n = poll(&fds, 2, -1)
            if n < 0 && errno != EINTR { return SIGTERM }
            if fds[1].revents != 0 { return nil }
        }
    }

    /// From now on a termination signal ends the process at once (this thread
    /// unblocks them; the VMM's other threads keep them blocked).
    func escalate() {
        Terminal.installTerminationHandlers()
    }
}
