import Posix
import Synchronization
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
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
/// allows). Writes are buffered into messages of up to 65519 plaintext bytes;
/// reads decrypt whole messages and hand out their bytes. The first failed
/// authentication kills the channel: that read and every later call throw
/// `ByteStreamError.corrupt`. So does a peer silent for `idleTimeout`.
///
/// One thread may write while another reads; `close` may come from any thread.
/// The channel owns the socket and closes it when released.
public final class SecureChannel: ByteStream, @unchecked Sendable {
    /// Bound into the handshake hash, so a peer speaking another protocol or
    /// version fails the handshake instead of misreading the stream.
    public static let prologue = Array("skiff-migration v1".utf8)
    static let maxPlaintext = NoiseHandshake.maxMessageLength - NoiseCipherState.tagLength
    static let lengthPrefix = 2

    enum State: Equatable {
        case open
        case closed
        case dead(String)
    }

    private let io: SocketIO
    private let state = Mutex(State.open)
    /// False once a failed handshake hands the socket back to its caller.
    private var ownsSocket = true

    /// A peer that sends (or takes) nothing for this long ends the read (or
    /// write) with `SecureChannelError.idle`, and the channel dies; nil waits
    /// forever. Set it before use. The socket's SO_RCVTIMEO cannot do this: a
    /// timed-out recv comes back as EAGAIN, which `SocketIO` waits out in poll.
    public var idleTimeout: Duration?
    private var idleDeadline: SocketIO.Deadline? { idleTimeout.map { SocketIO.Deadline(after: $0) } }

    // Send side: touched only by the writing thread.
    private var sendCipher: NoiseCipherState
    private var pending: [UInt8] = []

    // Receive side: touched only by the reading thread.
    private var receiveCipher: NoiseCipherState
    private var raw: [UInt8]  // received, not yet decrypted: raw[rawStart..<rawEnd]
    private var rawStart = 0, rawEnd = 0
    private var plain = Data()  // decrypted, not yet read: plain[plainStart...]
    private var plainStart = 0

    init(socket: Int32, send: NoiseCipherState, receive: NoiseCipherState) {
        io = SocketIO(fd: socket)
        sendCipher = send
        receiveCipher = receive
        pending.reserveCapacity(Self.maxPlaintext)
        // Room for several messages, so one recv(2) usually brings more than one.
        raw = [UInt8](repeating: 0, count: 4 * (Self.lengthPrefix + NoiseHandshake.maxMessageLength))
    }

    deinit {
        if ownsSocket { Glibc.close(io.fd) }
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
            if pending.isEmpty && rest.count >= Self.maxPlaintext {
                // A whole message straight from the caller's buffer: no copy into `pending`.
                try sendMessage(UnsafeRawBufferPointer(rebasing: rest[..<Self.maxPlaintext]), deadline: idleDeadline)
                rest = UnsafeRawBufferPointer(rebasing: rest[Self.maxPlaintext...])
                continue
            }
            let take = min(rest.count, Self.maxPlaintext - pending.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[..<take]))
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if pending.count == Self.maxPlaintext { try sendPending() }
        }
    }

    public func flush() throws {
        try checkUsable()
        do {
            if !pending.isEmpty { try sendPending() }
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
            if plainStart == plain.count {
                try receiveMessage(deadline: idleDeadline)
                continue
            }
            let n = min(buffer.count - filled, plain.count - plainStart)
            plain.withUnsafeBytes { (src: UnsafeRawBufferPointer) in
                UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<filled + n])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: src[plainStart..<plainStart + n]))
            }
            filled += n
            plainStart += n
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

    private func sendPending() throws {
        try pending.withUnsafeBytes { try sendMessage($0, deadline: idleDeadline) }
        pending.removeAll(keepingCapacity: true)
    }

    /// Encrypts `plaintext` (at most `maxPlaintext` bytes) as one message and sends it.
    func sendMessage(_ plaintext: UnsafeRawBufferPointer, deadline: SocketIO.Deadline? = nil) throws {
        let sealed: Data
        do {
            sealed = try sendCipher.seal(ad: [], plaintext: plaintext)
        } catch {
            throw kill("cannot send: \(error)")
        }
        // Length and message straight from swift-crypto's buffer (past its
        // nonce): two sends, the first with MSG_MORE so TCP sends one segment train.
        let length = sealed.count - NoiseCipherState.nonceLength
        try [UInt8(length >> 8), UInt8(length & 0xff)].withUnsafeBytes { try io.sendAll($0, deadline: deadline, more: true) }
        try sealed.withUnsafeBytes { (b: UnsafeRawBufferPointer) in
            try io.sendAll(UnsafeRawBufferPointer(rebasing: b[NoiseCipherState.nonceLength...]), deadline: deadline)
        }
    }

    /// Receives and decrypts the next message into `plain`, which must be used up.
    func receiveMessage(deadline: SocketIO.Deadline?) throws {
        try fillRaw(atLeast: Self.lengthPrefix, deadline: deadline)
        let length = Int(raw[rawStart]) << 8 | Int(raw[rawStart + 1])
        guard length >= NoiseCipherState.tagLength else {
            throw kill("a message of \(length) bytes is shorter than its authentication tag")
        }
        try fillRaw(atLeast: Self.lengthPrefix + length, deadline: deadline)
        let start = rawStart + Self.lengthPrefix
        do {
            plain = try raw.withUnsafeBytes { try receiveCipher.open(ad: [], ciphertext: UnsafeRawBufferPointer(rebasing: $0[start..<start + length])) }
            plainStart = 0
        } catch NoiseError.decryptFailed {
            throw kill("a message failed authentication (tampered, or not from the peer)")
        } catch {
            throw kill("cannot receive: \(error)")
        }
        rawStart = start + length
    }

    /// Makes `raw[rawStart..<rawEnd]` hold at least `count` bytes.
    private func fillRaw(atLeast count: Int, deadline: SocketIO.Deadline?) throws {
        if rawEnd - rawStart >= count { return }
        if rawStart > 0 {
            // Move the partial message to the front; it is at most one message long.
            raw.withUnsafeMutableBytes { b in
                b.baseAddress!.copyMemory(from: b.baseAddress! + rawStart, byteCount: rawEnd - rawStart)
            }
            rawEnd -= rawStart
            rawStart = 0
        }
        let need = count - rawEnd
        let got = try raw.withUnsafeMutableBytes { b in
            try io.receive(into: UnsafeMutableRawBufferPointer(rebasing: b[rawEnd...]), minimum: need, deadline: deadline)
        }
        rawEnd += got
    }

    /// The bytes of the message just received, for the handshake's confirmation.
    func takeMessage() -> [UInt8] {
        defer { plainStart = plain.count }
        return Array(plain.dropFirst(plainStart))
    }
}
