import Posix
#if canImport(Glibc)
import Glibc
#endif

extension SecureChannel {
    /// The initiator's first transport message. Until the responder has it, it
    /// cannot tell a live initiator from a replay of an old first message.
    static let confirmation = Array("skiff-migration v1 confirm".utf8)
    public static let defaultHandshakeTimeout = Duration.seconds(10)

    /// Runs the handshake as the side that connected (the migration source).
    /// Returns once the responder proved it holds `key`; throws
    /// `SecureChannelError` (or `SystemCallError`) otherwise. On success the
    /// channel owns `socket`; on failure the caller still does.
    public static func initiator(socket: Int32, key: MigrationKey,
                                 timeout: Duration = defaultHandshakeTimeout) throws -> SecureChannel {
        try initiator(socket: socket, key: key, timeout: timeout,
                      handshake: NoiseHandshake(role: .initiator, prologue: prologue, psk: key.bytes))
    }

    /// Runs the handshake as the side that accepted (the migration
    /// destination). Returns once the initiator proved it holds `key` and is
    /// live (its confirmation arrived); throws `SecureChannelError` otherwise.
    public static func responder(socket: Int32, key: MigrationKey,
                                 timeout: Duration = defaultHandshakeTimeout) throws -> SecureChannel {
        try responder(socket: socket, key: key, timeout: timeout,
                      handshake: NoiseHandshake(role: .responder, prologue: prologue, psk: key.bytes))
    }

    /// The handshake with an injected state (tests give it fixed ephemeral keys).
    static func initiator(socket: Int32, key: MigrationKey, timeout: Duration,
                          handshake: NoiseHandshake) throws -> SecureChannel {
        var hs = handshake
        let io = SocketIO(fd: socket)
        let deadline = SocketIO.Deadline(after: timeout)
        // -> psk, e
        try sendHandshakeMessage(hs.writeMessage(payload: []), io: io, deadline: deadline)
        // <- e, ee: decrypts only if the responder mixed in the same key.
        _ = try handshakeStep { try hs.readMessage(receiveHandshakeMessage(io: io, deadline: deadline)) }
        let (send, receive) = hs.split()
        let channel = try SecureChannel(socket: socket, send: send, receive: receive)
        do {
            try confirmation.withUnsafeBytes { try channel.sendMessage($0, deadline: deadline) }
        } catch ByteStreamError.endOfStream {
            channel.disown()
            throw SecureChannelError.peerClosedDuringHandshake
        } catch {
            channel.disown()
            throw error
        }
        return channel
    }

    static func responder(socket: Int32, key: MigrationKey, timeout: Duration,
                          handshake: NoiseHandshake) throws -> SecureChannel {
        var hs = handshake
        let io = SocketIO(fd: socket)
        let deadline = SocketIO.Deadline(after: timeout)
        // -> psk, e
        let first = try receiveHandshakeMessage(io: io, deadline: deadline)
        do {
            _ = try handshakeStep { try hs.readMessage(first) }
        } catch SecureChannelError.wrongKey {
            // Answer with bytes shaped like a real reply, so the initiator
            // fails to decrypt them and reports the wrong key too, rather than
            // only seeing the connection close.
            var rng = SystemRandomNumberGenerator()
            let decoy = (0..<NoiseHandshake.dhLength + NoiseCipherState.tagLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
            try? sendHandshakeMessage(decoy, io: io, deadline: deadline)
            throw SecureChannelError.wrongKey
        }
        // <- e, ee
        try sendHandshakeMessage(hs.writeMessage(payload: []), io: io, deadline: deadline)
        let (send, receive) = hs.split()
        let channel = try SecureChannel(socket: socket, send: send, receive: receive)
        do {
            do {
                try channel.receiveMessage(deadline: deadline)
            } catch ByteStreamError.corrupt {
                throw SecureChannelError.wrongKey
            } catch ByteStreamError.endOfStream {
                throw SecureChannelError.peerClosedDuringHandshake
            }
            guard channel.takeMessage() == confirmation else {
                throw SecureChannelError.malformedHandshake("the initiator's confirmation is not the expected one")
            }
        } catch {
            channel.disown()
            throw error
        }
        return channel
    }

    /// Maps Noise's refusals to what a user is told.
    private static func handshakeStep<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch NoiseError.decryptFailed {
            throw SecureChannelError.wrongKey
        } catch let e as NoiseError {
            throw SecureChannelError.malformedHandshake(e.description)
        } catch ByteStreamError.endOfStream {
            throw SecureChannelError.peerClosedDuringHandshake
        }
    }

    private static func sendHandshakeMessage(_ message: [UInt8], io: SocketIO, deadline: SocketIO.Deadline) throws {
        let framed = [UInt8(message.count >> 8), UInt8(message.count & 0xff)] + message
        do {
            try framed.withUnsafeBytes { try io.sendAll($0, deadline: deadline) }
        } catch ByteStreamError.endOfStream {
            throw SecureChannelError.peerClosedDuringHandshake
        }
    }

    /// One length-prefixed handshake message; read byte-exactly, so nothing
    /// after it is consumed before the channel exists.
    private static func receiveHandshakeMessage(io: SocketIO, deadline: SocketIO.Deadline) throws -> [UInt8] {
        do {
            var prefix = [UInt8](repeating: 0, count: 2)
            _ = try prefix.withUnsafeMutableBytes { try io.receive(into: $0, minimum: 2, deadline: deadline) }
            let length = Int(prefix[0]) << 8 | Int(prefix[1])
            // NNpsk0's messages are an ephemeral key and an empty payload's tag.
            guard length == NoiseHandshake.dhLength + NoiseCipherState.tagLength else {
                throw SecureChannelError.malformedHandshake("a handshake message of \(length) bytes (not a Skiff migration peer?)")
            }
            var message = [UInt8](repeating: 0, count: length)
            _ = try message.withUnsafeMutableBytes { try io.receive(into: $0, minimum: length, deadline: deadline) }
            return message
        } catch ByteStreamError.endOfStream {
            throw SecureChannelError.peerClosedDuringHandshake
        }
    }
}
