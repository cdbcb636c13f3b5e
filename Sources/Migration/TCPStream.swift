import Posix
#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP connection as a `ByteStream`: writes are gathered in a buffer
/// (one `send` per 256 KiB, not one per frame header), large writes go
/// straight to the socket, in one `sendmsg` with what was gathered before
/// them (a memory run's headers and its pages: one system call per MiB), reads
/// fill the caller's buffer in as few `recv`s as the kernel allows. TCP_NODELAY is set: the protocol's small replies (ready,
/// running) sit inside the guest's downtime and must not wait for Nagle.
// Sound because: one thread at a time uses a stream (the migration's sender or receiver), handed over by thread start or a lock.
public final class TCPStream: ByteStream, @unchecked Sendable {
    public let fileDescriptor: Int32
    private let buffer: UnsafeMutableRawPointer
    private let capacity = 256 << 10
    private var used = 0
    private var isClosed = false
    /// The send/receive limit set by `setTimeout`, carried over to a secure channel.
    public private(set) var timeoutSeconds: Int?

    /// Takes ownership of a connected socket.
    public init(socket: Int32) {
        fileDescriptor = socket
        buffer = .allocate(byteCount: capacity, alignment: 64)
        var one: Int32 = 1
        setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit {
        close()
        buffer.deallocate()
    }

    /// Connects to `endpoint` (every address it resolves to, in turn).
    public static func connect(to endpoint: MigrationEndpoint, timeoutSeconds: Int = 30) throws -> TCPStream {
        var lastError = "no address"
        for address in try endpoint.resolve() {
            let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            let ok = address.withSockaddr { Glibc.connect(fd, $0, $1) } == 0
            if ok {
                let stream = TCPStream(socket: fd)
                stream.setTimeout(seconds: timeoutSeconds)
                return stream
            }
            lastError = String(cString: strerror(errno))
            Glibc.close(fd)
        }
        throw MigrationError(.connection, "cannot connect to \(endpoint): \(lastError)")
    }

    /// Send and receive time limits: a peer that goes silent ends the migration
    /// with an error instead of hanging it.
    public func setTimeout(seconds: Int) {
        timeoutSeconds = seconds
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fileDescriptor, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fileDescriptor, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !isClosed else { throw ByteStreamError.closed }
        guard bytes.count > 0 else { return }
        if bytes.count >= capacity / 2 {
            let gathered = used
            used = 0
            try sendAll(UnsafeRawBufferPointer(start: buffer, count: gathered), bytes)
            return
        }
        if used + bytes.count > capacity { try flush() }
        (buffer + used).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        used += bytes.count
    }

    public func flush() throws {
        guard !isClosed else { throw ByteStreamError.closed }
        guard used > 0 else { return }
        let n = used
        used = 0
        try sendAll(UnsafeRawBufferPointer(start: buffer, count: n), UnsafeRawBufferPointer(start: nil, count: 0))
    }

    public func read(into target: UnsafeMutableRawBufferPointer) throws {
        guard !isClosed else { throw ByteStreamError.closed }
        var done = 0
        while done < target.count {
            let n = recv(fileDescriptor, target.baseAddress! + done, target.count - done, Int32(MSG_WAITALL))
            if n > 0 { done += n; continue }
            if n == 0 { throw ByteStreamError.endOfStream }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                throw MigrationError(.timeout, "the peer sent nothing for too long")
            }
            throw MigrationError(.connection, "receive: \(String(cString: strerror(errno)))")
        }
    }

    /// Hands the socket to another owner (the secure channel): this stream
    /// stops using it and will not close it. Anything buffered is dropped.
    public func releaseSocket() -> Int32 {
        isClosed = true
        used = 0
        return fileDescriptor
    }

    public func close() {
        guard !isClosed else { return }
        isClosed = true
        shutdown(fileDescriptor, Int32(SHUT_RDWR))
        Glibc.close(fileDescriptor)
    }

    /// Sends `first` then `second` whole, in as few `sendmsg` calls as the kernel allows.
    private func sendAll(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) throws {
        var parts = [first, second].filter { $0.count > 0 }
        while !parts.isEmpty {
            var vectors = parts.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
            let n = vectors.withUnsafeMutableBufferPointer { v -> Int in
                var message = msghdr()
                message.msg_iov = v.baseAddress
                message.msg_iovlen = v.count
                return sendmsg(fileDescriptor, &message, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw MigrationError(.timeout, "the peer took nothing for too long")
                }
                throw MigrationError(.connection, "send: \(String(cString: strerror(errno)))")
            }
            // Drop what went; a partial part keeps its tail.
            var sent = n
            while sent > 0, let head = parts.first {
                if sent >= head.count {
                    sent -= head.count
                    parts.removeFirst()
                } else {
                    parts[0] = UnsafeRawBufferPointer(rebasing: head[sent...])
                    sent = 0
                }
            }
        }
    }
}
