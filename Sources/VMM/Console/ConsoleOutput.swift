import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension Machine {
    /// The default console sink: the guest's bytes, unbuffered, to stdout.
    ///
    /// stdout may be non-blocking without skiff setting it (a parent left
    /// O_NONBLOCK on a shared terminal or pipe), so EAGAIN waits for room
    /// instead of dropping guest output. Only a broken stdout (EPIPE, EIO…) loses bytes.
    public static func writeToStdout(_ byte: UInt8) {
        var b = byte
        while true {
            let n = Glibc.write(STDOUT_FILENO, &b, 1)
            if n == 1 { return }
            if n < 0 && errno == EINTR { continue }
            guard n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) else { return }
            var room = pollfd(fd: STDOUT_FILENO, events: Int16(POLLOUT), revents: 0)
            if poll(&room, 1, -1) < 0 && errno != EINTR { return }
        }
    }
}
