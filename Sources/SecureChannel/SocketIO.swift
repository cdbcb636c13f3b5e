import Posix
#if canImport(Glibc)
import Glibc
#endif

/// Whole-buffer send and receive on a stream socket, blocking or not, with an
/// optional deadline (the handshake has one; the stream after it, its
/// `idleTimeout` per message, if set).
struct SocketIO {
    let fd: Int32

    /// A point on the monotonic clock after which a call gives up.
    struct Deadline {
        let instant: ContinuousClock.Instant
        let timeout: Duration

        init(after timeout: Duration) {
            self.timeout = timeout
            instant = .now + timeout
        }

        /// Milliseconds left for poll(2), at least 0.
        var remainingMilliseconds: Int32 {
            let left = ContinuousClock.now.duration(to: instant)
            guard left > .zero else { return 0 }
            let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1
            return Int32(clamping: ms)
        }
    }

    /// Sends all of `bytes`. A peer that is gone reads as `endOfStream`.
    /// `more`: more bytes follow at once (MSG_MORE), so TCP need not send these alone.
    func sendAll(_ bytes: UnsafeRawBufferPointer, deadline: Deadline? = nil, more: Bool = false) throws {
        var sent = 0
        while sent < bytes.count {
            // MSG_NOSIGNAL: a closed peer is an error here, not a SIGPIPE that kills the VMM.
            // With a deadline, never block in send(2) itself: a full socket waits in poll, which has the limit.
            let flags = Int32(MSG_NOSIGNAL) | (more ? Int32(MSG_MORE) : 0) | (deadline == nil ? 0 : Int32(MSG_DONTWAIT))
            let n = send(fd, bytes.baseAddress! + sent, bytes.count - sent, flags)
            if n >= 0 {
                sent += n
                continue
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: try wait(for: Int16(POLLOUT), deadline: deadline)
            case EPIPE, ECONNRESET: throw ByteStreamError.endOfStream
            case let e: throw SystemCallError("send", errno: e)
            }
        }
    }

    /// Receives at least `minimum` and at most `buffer.count` bytes; returns
    /// how many. Throws `endOfStream` if the peer closes first.
    func receive(into buffer: UnsafeMutableRawBufferPointer, minimum: Int, deadline: Deadline? = nil) throws -> Int {
        var received = 0
        while received < minimum {
            if let deadline { try wait(for: Int16(POLLIN), deadline: deadline) }
            let n = recv(fd, buffer.baseAddress! + received, buffer.count - received, 0)
            if n > 0 {
                received += n
                continue
            }
            if n == 0 { throw ByteStreamError.endOfStream }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: try wait(for: Int16(POLLIN), deadline: deadline)
            case ECONNRESET: throw ByteStreamError.endOfStream
            case let e: throw SystemCallError("recv", errno: e)
            }
        }
        return received
    }

    /// Waits until the socket is ready for `events`, or the deadline passes.
    private func wait(for events: Int16, deadline: Deadline?) throws {
        var pfd = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let ms = deadline?.remainingMilliseconds ?? -1
            let n = poll(&pfd, 1, ms)
            if n > 0 { return }
            if n == 0, let deadline { throw SecureChannelError.timedOut(deadline.timeout) }
            if n < 0, errno != EINTR { throw SystemCallError("poll", errno: errno) }
        }
    }
}
