import Posix
#if canImport(Glibc)
import Glibc
#endif

/// A `ByteStream` over a connected socket, encrypted and authenticated with
/// Noise_NNpsk0_25519_ChaChaPoly_SHA256 under a `MigrationKey`
/// (docs/migration-security.md says why and what it protects against).
///
/// Made by `initiator(socket:key:)` or `responder(socket:key:)`, which run
/// the handshake. On the wire every message, handshake or transport, is a
/// 2-byte big-endian length and that many bytes (at most 65535, as Noise
/// allows). Writes are sealed into messages of up to 65519 plaintext bytes —
/// a large write straight from the caller's memory, small ones gathered first —
/// and up to 1 MiB of sealed messages go out in one send(2) (at `flush` at the
/// latest). Reads take what the socket has, up to 1 MiB, and open each message
/// straight into the caller's buffer when it wants the whole message, in place
/// otherwise. The first failed authentication kills the channel: that read and
/// every later call throw `ByteStreamError.corrupt` (the caller's buffer may
/// hold garbage then). So does a peer silent for `idleTimeout`.
///
/// One thread may write while another reads; `close` may come from any thread.
/// The channel owns the socket and closes it when released.
// Sound because: `state` is a Mutex; `ownsSocket`, `idleTimeout` and the cipher states belong to the one thread using the channel at a time.
public final class SecureChannel: ByteStream, @unchecked Sendable {
    /// Bound into the handshake hash, so a peer speaking another protocol or
    /// version fails the handshake instead of misreading the stream.
    public static let prologue = Array("skiff-migration v1".utf8)
    static let maxPlaintext = NoiseHandshake.maxMessageLength - NoiseCipherState.tagLength
    static let lengthPrefix = 2
    /// Sealed messages gathered per send(2), and bytes taken per recv(2): 16 whole messages.
    static let batchCapacity = 16 * (lengthPrefix + NoiseHandshake.maxMessageLength)

    enum State: Equatable {
        case open
        case closed
        case dead(String)
    }

    private let io: SocketIO
    private let state = Lock(State.open)
    /// False once a failed handshake hands the socket back to its caller.
    private var ownsSocket = true

    /// A peer that sends (or takes) nothing for this long ends the read (or
    /// write) with `SecureChannelError.idle`, and the channel dies; nil waits
    /// forever. Set it before use. The socket's SO_RCVTIMEO cannot do this: a
    /// timed-out recv comes back as EAGAIN, which `SocketIO` waits out in poll.
    public var idleTimeout: Duration?
    private var idleDeadline: SocketIO.Deadline? { idleTimeout.map { SocketIO.Deadline(after: $0) } }

    // Send side: touched only by the writing thread.
    private let sendCipher: TransportCipher
    private let pending: UnsafeMutableRawPointer  // plaintext of the next message: pending[0..<pendingCount]
    private var pendingCount = 0
    private let sealed: UnsafeMutableRawPointer  // messages sealed, not yet sent: sealed[0..<sealedCount]
    private var sealedCount = 0

    // Receive side: touched only by the reading thread.
    private let receiveCipher: TransportCipher
    private let raw: UnsafeMutableRawPointer  // received, not yet opened: raw[rawStart..<rawEnd]
    private var rawStart = 0, rawEnd = 0
    private var plainStart = 0, plainEnd = 0  // a message opened in place, not yet read: raw[plainStart..<plainEnd]

    init(socket: Int32, send: NoiseCipherState, receive: NoiseCipherState) throws {
        io = SocketIO(fd: socket)
        sendCipher = try TransportCipher(send)
        receiveCipher = try TransportCipher(receive)
        pending = .allocate(byteCount: Self.maxPlaintext, alignment: 64)
        sealed = .allocate(byteCount: Self.batchCapacity, alignment: 64)
        raw = .allocate(byteCount: Self.batchCapacity, alignment: 64)
    }

    deinit {
        if ownsSocket { Glibc.close(io.fd) }
        pending.deallocate()
        sealed.deallocate()
        raw.deallocate()
    }

    /// For a handshake that fails after the channel was made: the caller keeps the socket.
    func disown() {
        ownsSocket = false
    }

    private func checkUsable() throws {
        switch state.withLock({ $0 }) {
        case .open: return
        case .closed: throw ByteStreamError.closed
        case .dead(let why): throw ByteStreamError.corrupt(why)
        }
    }

    /// Marks the channel dead (the first reason wins) and returns the error to throw.
    private func kill(_ why: String) -> ByteStreamError {
        let reason = state.withLock { s -> String in
            if case .dead(let first) = s { return first }
            if s == .open { s = .dead(why) }
            return why
        }
        return .corrupt(reason)
    }

    // MARK: ByteStream

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try checkUsable()
        do {
            try writeMessages(bytes)
        } catch {
            throw closedInstead(of: error)
        }
    }

    private func writeMessages(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        while !rest.isEmpty {
            if pendingCount == 0 && rest.count >= Self.maxPlaintext {
                // A whole message sealed straight from the caller's buffer: no copy into `pending`.
                try seal(UnsafeRawBufferPointer(rebasing: rest[..<Self.maxPlaintext]))
                rest = UnsafeRawBufferPointer(rebasing: rest[Self.maxPlaintext...])
                continue
            }
            let take = min(rest.count, Self.maxPlaintext - pendingCount)
            (pending + pendingCount).copyMemory(from: rest.baseAddress!, byteCount: take)
            pendingCount += take
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if pendingCount == Self.maxPlaintext { try sealPending() }
        }
    }

    public func flush() throws {
        try checkUsable()
        do {
            if pendingCount > 0 { try sealPending() }
            try sendSealed(deadline: idleDeadline)
        } catch {
            throw closedInstead(of: error)
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws {
        try checkUsable()
        do {
            try readMessages(into: buffer)
        } catch {
            throw closedInstead(of: error)
        }
    }

    /// A call that was blocked when another thread closed the channel sees
    /// the socket shut down; it reports `closed`, not a vanished peer. A
    /// deadline passed is `idle` (the handshake's own is `timedOut`), and
    /// kills the channel: a message may be half sent or half read.
    private func closedInstead(of error: Error) -> Error {
        if state.withLock({ $0 }) == .closed { return ByteStreamError.closed }
        if case SecureChannelError.timedOut(let limit) = error {
            _ = kill("the peer sent or took nothing for \(limit)")
            return SecureChannelError.idle(limit)
        }
        return error
    }

    private func readMessages(into buffer: UnsafeMutableRawBufferPointer) throws {
        var filled = 0
        while filled < buffer.count {
            if plainStart < plainEnd {
                let n = min(buffer.count - filled, plainEnd - plainStart)
                (buffer.baseAddress! + filled).copyMemory(from: raw + plainStart, byteCount: n)
                filled += n
                plainStart += n
                continue
            }
            // The caller wants the whole next message (or more): open it straight into its buffer.
            filled += try receiveMessage(deadline: idleDeadline, into: buffer.baseAddress! + filled,
                                         wanting: buffer.count - filled)
        }
    }

    public func close() {
        let wasOpen = state.withLock { s -> Bool in
            defer { s = .closed }
            return s != .closed
        }
        // shutdown, not close: a thread blocked in recv/send on this fd wakes
        // up, and the fd number cannot be reused under it. deinit closes it.
        if wasOpen { shutdown(io.fd, Int32(SHUT_RDWR)) }
    }

    // MARK: Messages

    private func sealPending() throws {
        try seal(UnsafeRawBufferPointer(start: pending, count: pendingCount))
        pendingCount = 0
    }

    /// Seals `plaintext` (at most `maxPlaintext` bytes) as one message after
    /// those already sealed, sending those first if it would not fit.
    private func seal(_ plaintext: UnsafeRawBufferPointer) throws {
        let length = plaintext.count + TransportCipher.tagLength
        if sealedCount + Self.lengthPrefix + length > Self.batchCapacity { try sendSealed(deadline: idleDeadline) }
        let message = sealed + sealedCount
        message.storeBytes(of: UInt8(length >> 8), as: UInt8.self)
        (message + 1).storeBytes(of: UInt8(length & 0xff), as: UInt8.self)
        do {
            try sendCipher.seal(plaintext, into: message + Self.lengthPrefix)
        } catch {
            throw kill("cannot send: \(error)")
        }
        sealedCount += Self.lengthPrefix + length
    }

    private func sendSealed(deadline: SocketIO.Deadline?) throws {
        guard sealedCount > 0 else { return }
        // Whatever happens, these bytes are done with: a send that fails ends the channel's use.
        defer { sealedCount = 0 }
        try io.sendAll(UnsafeRawBufferPointer(start: sealed, count: sealedCount), deadline: deadline)
    }

    /// Encrypts `plaintext` (at most `maxPlaintext` bytes) as one message and
    /// sends it with anything gathered before it (the handshake's confirmation).
    func sendMessage(_ plaintext: UnsafeRawBufferPointer, deadline: SocketIO.Deadline? = nil) throws {
        if pendingCount > 0 { try sealPending() }
        try seal(plaintext)
        try sendSealed(deadline: deadline)
    }

    /// Receives and opens the next message in place, for `takeMessage` (the
    /// plaintext read so far must be used up).
    func receiveMessage(deadline: SocketIO.Deadline?) throws {
        _ = try receiveMessage(deadline: deadline, into: nil, wanting: 0)
    }

    /// Receives the next message and opens it into `target` if its plaintext
    /// is at most `wanting` bytes (returns how many), in place otherwise (returns 0).
    private func receiveMessage(deadline: SocketIO.Deadline?, into target: UnsafeMutableRawPointer?,
                                wanting: Int) throws -> Int {
        try fillRaw(atLeast: Self.lengthPrefix, deadline: deadline)
        let length = Int(raw.load(fromByteOffset: rawStart, as: UInt8.self)) << 8
            | Int(raw.load(fromByteOffset: rawStart + 1, as: UInt8.self))
        guard length >= TransportCipher.tagLength else {
            throw kill("a message of \(length) bytes is shorter than its authentication tag")
        }
        try fillRaw(atLeast: Self.lengthPrefix + length, deadline: deadline)
        let start = rawStart + Self.lengthPrefix
        let plaintext = length - TransportCipher.tagLength
        let direct = target != nil && plaintext <= wanting
        do {
            try receiveCipher.open(UnsafeRawBufferPointer(start: raw + start, count: length),
                                   into: direct ? target! : raw + start)
        } catch NoiseError.decryptFailed {
            throw kill("a message failed authentication (tampered, or not from the peer)")
        } catch {
            throw kill("cannot receive: \(error)")
        }
        rawStart = start + length
        if direct { return plaintext }
        plainStart = start
        plainEnd = start + plaintext
        return 0
    }

    /// Makes `raw[rawStart..<rawEnd]` hold at least `count` bytes.
    private func fillRaw(atLeast count: Int, deadline: SocketIO.Deadline?) throws {
        if rawEnd - rawStart >= count { return }
        if rawStart > 0 {
            // Move the partial message to the front; it is at most one message long
            // (anything opened in place before it has been read).
            if rawEnd > rawStart { raw.copyMemory(from: raw + rawStart, byteCount: rawEnd - rawStart) }
            rawEnd -= rawStart
            plainStart = 0
            plainEnd = 0
            rawStart = 0
        }
        rawEnd += try io.receive(into: UnsafeMutableRawBufferPointer(start: raw + rawEnd, count: Self.batchCapacity - rawEnd),
                                 minimum: count - rawEnd, deadline: deadline)
    }

    /// The bytes of the message just received, for the handshake's confirmation.
    func takeMessage() -> [UInt8] {
        defer { plainStart = plainEnd }
        return Array(UnsafeRawBufferPointer(start: raw + plainStart, count: plainEnd - plainStart))
    }
}
