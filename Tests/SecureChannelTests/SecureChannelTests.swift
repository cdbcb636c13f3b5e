import Crypto
import Foundation
import Posix
import Testing
@testable import SecureChannel

/// The encrypted stream over real sockets: round trips, a wrong key refused on
/// both sides before any payload, tampering and truncation, no plaintext on the
/// wire, handshake time limits.
@Suite struct SecureChannelTests {
    let key = MigrationKey.generate()

    @Test func largeRoundTripBothWaysWithRandomWriteAndReadSizes() throws {
        let (a, b) = socketPair()
        let (i, r) = handshake(initiator: a, responder: b, initiatorKey: key, responderKey: key)
        let initiator = try i.get(), responder = try r.get()
        let forward = patternBytes(count: 64 << 20, seed: 1)
        let backward = patternBytes(count: 4 << 20, seed: 2)

        // Each side writes on one thread while the other reads: full duplex.
        let writers = [Spawned { try Self.writeInRandomPieces(forward, to: initiator, seed: 3) },
                       Spawned { try Self.writeInRandomPieces(backward, to: responder, seed: 4) }]
        let backwardRead = Spawned { try Self.readInRandomPieces(count: backward.count, from: initiator, seed: 5) }
        let forwardRead = try Self.readInRandomPieces(count: forward.count, from: responder, seed: 6)
        for w in writers { try w.join().get() }
        #expect(sameBytes(forwardRead, forward))
        #expect(sameBytes(try backwardRead.join().get(), backward))
        initiator.close()
        responder.close()
        #expect(throws: ByteStreamError.closed) { try initiator.write([1]) }
        #expect(throws: ByteStreamError.closed) { try responder.read(count: 1) }
    }

    static func writeInRandomPieces(_ data: [UInt8], to channel: SecureChannel, seed: UInt64) throws {
        var rng = SplitMix(seed: seed)
        var offset = 0
        try data.withUnsafeBytes { all in
            while offset < data.count {
                // Mostly small and odd sizes, sometimes more than a Noise message.
                let limit = rng.next() % 8 == 0 ? 300_000 : 5_000
                let n = min(data.count - offset, 1 + Int(rng.next() % UInt64(limit)))
                try channel.write(UnsafeRawBufferPointer(rebasing: all[offset..<offset + n]))
                offset += n
                if rng.next() % 16 == 0 { try channel.flush() }
            }
        }
        try channel.flush()
    }

    static func readInRandomPieces(count: Int, from channel: SecureChannel, seed: UInt64) throws -> [UInt8] {
        var rng = SplitMix(seed: seed)
        var out = [UInt8](repeating: 0, count: count)
        var offset = 0
        try out.withUnsafeMutableBytes { all in
            while offset < count {
                let limit = rng.next() % 8 == 0 ? 200_000 : 7_000
                let n = min(count - offset, 1 + Int(rng.next() % UInt64(limit)))
                try channel.read(into: UnsafeMutableRawBufferPointer(rebasing: all[offset..<offset + n]))
                offset += n
            }
        }
        return out
    }

    /// The bytes on the wire are Noise's messages, length-prefixed: with fixed
    /// ephemeral keys, the first 50 bytes each way are exactly what a separate
    /// `NoiseHandshake` writes for the prologue and key.
    @Test func theWireCarriesLengthPrefixedNoiseMessages() throws {
        let ei = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: [UInt8](repeating: 3, count: 32))
        let er = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: [UInt8](repeating: 4, count: 32))
        let relay = Relay()
        let key = self.key
        let r = Spawned {
            try SecureChannel.responder(socket: relay.responderSocket, key: key, timeout: .seconds(10),
                                        handshake: NoiseHandshake(role: .responder, prologue: SecureChannel.prologue,
                                                                  psk: key.bytes, ephemeral: er))
        }
        let initiator = try SecureChannel.initiator(
            socket: relay.initiatorSocket, key: key, timeout: .seconds(10),
            handshake: NoiseHandshake(role: .initiator, prologue: SecureChannel.prologue, psk: key.bytes, ephemeral: ei))
        let responder = try r.join().get()
        initiator.close()
        responder.close()
        relay.finish()

        var i = NoiseHandshake(role: .initiator, prologue: Array("skiff-migration v1".utf8), psk: key.bytes, ephemeral: ei)
        var rs = NoiseHandshake(role: .responder, prologue: Array("skiff-migration v1".utf8), psk: key.bytes, ephemeral: er)
        let m0 = try i.writeMessage(payload: [])
        _ = try rs.readMessage(m0)
        let m1 = try rs.writeMessage(payload: [])
        #expect(Array(relay.bytes(.initiatorToResponder).prefix(50)) == [0, 48] + m0)
        #expect(relay.bytes(.responderToInitiator) == [0, 48] + m1)
        // Then the confirmation: 26 bytes of text and a tag, under the split key.
        let confirmation = Array(relay.bytes(.initiatorToResponder).dropFirst(50))
        #expect(confirmation.prefix(2) == [0, 42] && confirmation.count == 44)
        _ = try i.readMessage(m1)
        var (send, _) = i.split()
        var expected: [UInt8] = []
        try Array("skiff-migration v1 confirm".utf8).withUnsafeBytes { try send.encrypt(ad: [], plaintext: $0, into: &expected) }
        #expect(Array(confirmation.dropFirst(2)) == expected)
    }

    @Test func aWrongKeyIsRefusedOnBothSidesBeforeAnyTransportMessage() throws {
        let relay = Relay()
        let (i, r) = handshake(initiator: relay.initiatorSocket, responder: relay.responderSocket,
                               initiatorKey: key, responderKey: MigrationKey.generate())
        #expect(throws: SecureChannelError.wrongKey) { try i.get() }
        #expect(throws: SecureChannelError.wrongKey) { try r.get() }
        close(relay.initiatorSocket)
        close(relay.responderSocket)
        relay.finish()
        // Only the two handshake messages crossed: 2-byte length, 32-byte key, 16-byte tag.
        #expect(relay.bytes(.initiatorToResponder).count == 50)
        #expect(relay.bytes(.responderToInitiator).count == 50)
    }

    @Test func aPeerWithoutTheKeyCannotCompleteAHandshakeByReplay() throws {
        // Record a real first message, then replay it to a fresh responder: it
        // answers, but without the initiator's ephemeral key no confirmation follows.
        let relay = Relay()
        let (i, r) = handshake(initiator: relay.initiatorSocket, responder: relay.responderSocket,
                               initiatorKey: key, responderKey: key)
        try i.get().close()
        try r.get().close()
        relay.finish()
        let firstMessage = Array(relay.bytes(.initiatorToResponder).prefix(50))

        let (attacker, victim) = socketPair()
        defer { close(attacker); close(victim) }
        let responder = Spawned { try SecureChannel.responder(socket: victim, key: self.key, timeout: .seconds(5)) }
        _ = firstMessage.withUnsafeBytes { send(attacker, $0.baseAddress!, $0.count, 0) }
        var reply = [UInt8](repeating: 0, count: 50)
        #expect(reply.withUnsafeMutableBytes { recv(attacker, $0.baseAddress!, 50, Int32(MSG_WAITALL)) } == 50)
        // A guessed "confirmation" fails authentication.
        let forged = [0, 42] + [UInt8](repeating: 7, count: 42)
        _ = forged.withUnsafeBytes { send(attacker, $0.baseAddress!, $0.count, 0) }
        #expect(throws: SecureChannelError.wrongKey) { try responder.join().get() }
    }

    @Test func aTamperedTransportByteKillsTheChannel() throws {
        // 50 handshake bytes and a 44-byte confirmation, then the data's messages.
        let relay = Relay(tamper: .init(direction: .initiatorToResponder, offset: 50 + 44 + 1000, xor: 0x20))
        let (i, r) = handshake(initiator: relay.initiatorSocket, responder: relay.responderSocket,
                               initiatorKey: key, responderKey: key)
        let initiator = try i.get(), responder = try r.get()
        try initiator.write(patternBytes(count: 200_000, seed: 9))
        try initiator.flush()
        let error = #expect(throws: ByteStreamError.self) { try responder.read(count: 200_000) }
        guard case .corrupt = error else { Issue.record("expected corrupt, got \(String(describing: error))"); return }
        // Dead for good: later reads fail the same way without touching the socket.
        #expect(throws: error!) { try responder.read(count: 1) }
        #expect(throws: error!) { try responder.write([1]) }
        initiator.close()
        responder.close()
        relay.finish()
    }

    @Test func aTamperedHandshakeOrConfirmationIsAWrongKey() throws {
        // Where the byte changes, and what each side then says (nil: succeeds).
        let cases: [(Relay.Direction, Int, SecureChannelError?, SecureChannelError?)] = [
            (.initiatorToResponder, 20, .wrongKey, .wrongKey),  // first message: the responder answers with a decoy
            (.responderToInitiator, 40, .wrongKey, .peerClosedDuringHandshake),  // second message
            (.initiatorToResponder, 50 + 10, nil, .wrongKey),  // the confirmation
        ]
        for (direction, offset, initiatorError, responderError) in cases {
            let relay = Relay(tamper: .init(direction: direction, offset: offset, xor: 1))
            let key = self.key
            let r = Spawned { try SecureChannel.responder(socket: relay.responderSocket, key: key) }
            let i = Result { try SecureChannel.initiator(socket: relay.initiatorSocket, key: key) }
            // A failed initiator hangs up, as the migration code will, so the
            // responder is not left waiting for its confirmation.
            if case .failure = i { shutdown(relay.initiatorSocket, Int32(SHUT_RDWR)) }
            let rResult = r.join()
            func outcome(_ result: Result<SecureChannel, Error>) -> SecureChannelError? {
                if case .failure(let e) = result { return e as? SecureChannelError ?? .malformedHandshake("\(e)") }
                return nil
            }
            #expect(outcome(i) == initiatorError, "tampered at \(offset)")
            #expect(outcome(rResult) == responderError, "tampered at \(offset)")
            if case .success(let c) = i { c.close() } else { close(relay.initiatorSocket) }
            if case .success(let c) = rResult { c.close() } else { close(relay.responderSocket) }
            relay.finish()
        }
    }

    @Test func aTruncatedStreamEndsWithEndOfStream() throws {
        // Cut in the middle of the first data message.
        let relay = Relay(tamper: .init(direction: .initiatorToResponder, offset: 50 + 44 + 30_000, xor: nil))
        let (i, r) = handshake(initiator: relay.initiatorSocket, responder: relay.responderSocket,
                               initiatorKey: key, responderKey: key)
        let initiator = try i.get(), responder = try r.get()
        let data = patternBytes(count: 100_000, seed: 10)
        _ = try? initiator.write(data)
        _ = try? initiator.flush()
        #expect(throws: ByteStreamError.endOfStream) { try responder.read(count: data.count) }
        initiator.close()
        responder.close()
        relay.finish()
    }

    @Test func aStreamClosedBetweenMessagesEndsWithEndOfStream() throws {
        let (a, b) = socketPair()
        let (i, r) = handshake(initiator: a, responder: b, initiatorKey: key, responderKey: key)
        let initiator = try i.get(), responder = try r.get()
        try initiator.write([1, 2, 3])
        try initiator.flush()
        initiator.close()
        #expect(try responder.read(count: 3) == [1, 2, 3])
        #expect(throws: ByteStreamError.endOfStream) { try responder.read(count: 1) }
        responder.close()
    }

    @Test func noPlaintextMarkerCrossesTheWire() throws {
        let marker = Array("SKIFF-GUEST-MEMORY-MARKER-7f3a9c".utf8)
        var built: [UInt8] = []
        while built.count < 1 << 20 { built += marker + patternBytes(count: 997, seed: UInt64(built.count)) }
        let data = built

        let relay = Relay()
        let (i, r) = handshake(initiator: relay.initiatorSocket, responder: relay.responderSocket,
                               initiatorKey: key, responderKey: key)
        let initiator = try i.get(), responder = try r.get()
        let reader = Spawned { try responder.read(count: data.count) }
        try initiator.write(data)
        try initiator.flush()
        #expect(try reader.join().get() == data)
        let backReader = Spawned { try initiator.read(count: data.count) }
        try responder.write(data)
        try responder.flush()
        #expect(try backReader.join().get() == data)
        initiator.close()
        responder.close()
        relay.finish()
        let wire = relay.bytes(.initiatorToResponder)
        #expect(wire.count > data.count)
        #expect(!Self.contains(wire, marker))
        #expect(!Self.contains(relay.bytes(.responderToInitiator), marker))

        // The check can fail: the same data sent in the clear shows the marker.
        let plain = Relay()
        let sink = Spawned { () -> Void in
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while buffer.withUnsafeMutableBytes({ recv(plain.responderSocket, $0.baseAddress!, $0.count, 0) }) > 0 {}
        }
        _ = data.withUnsafeBytes { send(plain.initiatorSocket, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
        shutdown(plain.initiatorSocket, Int32(SHUT_WR))
        try sink.join().get()
        close(plain.initiatorSocket)
        close(plain.responderSocket)
        plain.finish()
        #expect(Self.contains(plain.bytes(.initiatorToResponder), marker))
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if haystack[start..<start + needle.count].elementsEqual(needle) { return true }
        }
        return false
    }

    @Test func closeWakesABlockedReader() throws {
        let (a, b) = socketPair()
        let (i, r) = handshake(initiator: a, responder: b, initiatorKey: key, responderKey: key)
        let initiator = try i.get(), responder = try r.get()
        let reader = Spawned { try responder.read(count: 10) }
        usleep(100_000)
        responder.close()
        #expect(throws: ByteStreamError.closed) { try reader.join().get() }
        #expect(throws: ByteStreamError.closed) { try responder.flush() }
        initiator.close()
    }

    /// After the handshake, `idleTimeout` ends a read from a silent peer and a
    /// write to a peer that takes nothing, and the channel is dead after it.
    @Test func aSilentPeerAfterTheHandshakeTimesOutWithIdleTimeout() throws {
        let (a, b) = socketPair()
        let (i, r) = handshake(initiator: a, responder: b, initiatorKey: key, responderKey: key)
        let initiator = try i.get(), responder = try r.get()
        defer { initiator.close(); responder.close() }
        responder.idleTimeout = .milliseconds(200)
        initiator.idleTimeout = .milliseconds(200)
        var started = ContinuousClock.now
        #expect(throws: SecureChannelError.idle(.milliseconds(200))) { _ = try responder.read(count: 10) }
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(throws: ByteStreamError.self) { _ = try responder.read(count: 10) }
        // Nobody reads the responder's side: the socket buffers fill, then the write times out.
        started = ContinuousClock.now
        let big = [UInt8](repeating: 7, count: 64 << 20)
        #expect(throws: SecureChannelError.idle(.milliseconds(200))) { try initiator.write(big) }
        #expect(ContinuousClock.now - started < .seconds(10))
    }

    @Test func aSilentPeerTimesTheHandshakeOut() throws {
        let (a, b) = socketPair()
        defer { close(a); close(b) }
        let started = ContinuousClock.now
        #expect(throws: SecureChannelError.timedOut(.milliseconds(300))) {
            _ = try SecureChannel.responder(socket: a, key: key, timeout: .milliseconds(300))
        }
        #expect(throws: SecureChannelError.timedOut(.milliseconds(300))) {
            _ = try SecureChannel.initiator(socket: a, key: key, timeout: .milliseconds(300))
        }
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func aPeerSpeakingSomethingElseIsRefused() throws {
        let (a, b) = socketPair()
        defer { close(a); close(b) }
        let request = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(b, $0.baseAddress!, $0.count, 0) }
        let error = #expect(throws: SecureChannelError.self) { _ = try SecureChannel.responder(socket: a, key: key) }
        guard case .malformedHandshake = error else { Issue.record("got \(String(describing: error))"); return }
    }

    @Test func aPeerThatHangsUpMidHandshakeIsReported() throws {
        let (a, b) = socketPair()
        defer { close(a) }
        close(b)
        #expect(throws: SecureChannelError.peerClosedDuringHandshake) {
            _ = try SecureChannel.initiator(socket: a, key: key)
        }
    }
}

/// A small seeded generator, so a failing run can be repeated.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
