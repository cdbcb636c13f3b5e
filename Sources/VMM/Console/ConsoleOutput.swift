#if canImport(Glibc)
import Glibc
#endif

extension Machine {
    /// The default console sink: the guest's bytes, unbuffered, to stdout.
    ///
    /// stdout may be non-blocking without skiff setting it (a parent left
    /// O_NONBLOCK on a shared terminal or pipe), so EAGAIN waits for room
    /// instead of dropping guest output. A byte is given up only when stdout is
    /// broken (EPIPE, EIO…) or on EINTR: the vCPU was kicked because the VM is
    /// stopping, and a stuck stdout must not hold that up.
    public static func writeToStdout(_ byte: UInt8) {
        var b = byte
        while true {
            let n = Glibc.write(STDOUT_FILENO, &b, 1)
            if n == 1 { return }
            guard n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) else { return }
            var room = pollfd(fd: STDOUT_FILENO, events: Int16(POLLOUT), revents: 0)
            if poll(&room, 1, -1) < 0 { return }
        }
    }
}
