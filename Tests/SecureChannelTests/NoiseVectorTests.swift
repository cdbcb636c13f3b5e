import Crypto
import Foundation
import Testing
@testable import SecureChannel

/// The published cacophony vector for Noise_NNpsk0_25519_ChaChaPoly_SHA256
/// (Fixtures/noise-nnpsk0-cacophony.json names its source): our handshake and
/// transport messages must match it byte for byte, in both roles.
@Suite struct NoiseVectorTests {
    struct Vector: Decodable {
        struct Message: Decodable { let payload: String; let ciphertext: String }
        let name: String
        let init_prologue: String
        let init_psk: String
        let init_ephemeral: String
        let resp_prologue: String
        let resp_psk: String
        let resp_ephemeral: String
        let messages: [Message]
    }

    static func load() throws -> Vector {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/noise-nnpsk0-cacophony.json")
        return try JSONDecoder().decode(Vector.self, from: Data(contentsOf: url))
    }

    @Test func handshakeAndTransportMatchThePublishedVector() throws {
        let v = try Self.load()
        #expect(v.name == NoiseHandshake.protocolName)
        var initiator = NoiseHandshake(
            role: .initiator, prologue: try hex(v.init_prologue), psk: try hex(v.init_psk),
            ephemeral: try .init(rawRepresentation: hex(v.init_ephemeral)))
        var responder = NoiseHandshake(
            role: .responder, prologue: try hex(v.resp_prologue), psk: try hex(v.resp_psk),
            ephemeral: try .init(rawRepresentation: hex(v.resp_ephemeral)))

        // Handshake: message 0 from the initiator, 1 from the responder.
        let m0 = try initiator.writeMessage(payload: hex(v.messages[0].payload))
        #expect(m0 == (try hex(v.messages[0].ciphertext)))
        #expect(try responder.readMessage(m0) == hex(v.messages[0].payload))
        let m1 = try responder.writeMessage(payload: hex(v.messages[1].payload))
        #expect(m1 == (try hex(v.messages[1].ciphertext)))
        #expect(try initiator.readMessage(m1) == hex(v.messages[1].payload))
        #expect(initiator.isComplete && responder.isComplete)
        #expect(initiator.handshakeHash == responder.handshakeHash)

        // Transport: the rest alternate, initiator first.
        var (iSend, iReceive) = initiator.split()
        var (rSend, rReceive) = responder.split()
        for (index, message) in v.messages.enumerated().dropFirst(2) {
            let fromInitiator = index % 2 == 0
            let payload = try hex(message.payload)
            var ciphertext: [UInt8] = []
            try payload.withUnsafeBytes {
                if fromInitiator { try iSend.encrypt(ad: [], plaintext: $0, into: &ciphertext) }
                else { try rSend.encrypt(ad: [], plaintext: $0, into: &ciphertext) }
            }
            #expect(ciphertext == (try hex(message.ciphertext)), "message \(index)")
            var opened: [UInt8] = []
            try ciphertext.withUnsafeBytes {
                if fromInitiator { try rReceive.decrypt(ad: [], ciphertext: $0, into: &opened) }
                else { try iReceive.decrypt(ad: [], ciphertext: $0, into: &opened) }
            }
            #expect(opened == payload, "message \(index)")
        }
    }

    /// Noise's HKDF is not RFC 5869's expand with info; check it on its own so a
    /// mismatch above points at the right place.
    @Test func hkdfChainsAsTheSpecSays() {
        let ck = [UInt8](repeating: 7, count: 32), ikm: [UInt8] = [1, 2, 3]
        let out = NoiseSymmetricState.hkdf(chainingKey: ck, inputKeyMaterial: ikm, outputs: 3)
        let temp = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: ikm, using: SymmetricKey(data: ck))))
        let o1 = Array(HMAC<SHA256>.authenticationCode(for: [1], using: temp))
        let o2 = Array(HMAC<SHA256>.authenticationCode(for: o1 + [2], using: temp))
        let o3 = Array(HMAC<SHA256>.authenticationCode(for: o2 + [3], using: temp))
        #expect(out == [o1, o2, o3])
    }

    @Test func aTamperedHandshakeMessageIsRefused() throws {
        var initiator = NoiseHandshake(role: .initiator, prologue: [], psk: [UInt8](repeating: 1, count: 32))
        var responder = NoiseHandshake(role: .responder, prologue: [], psk: [UInt8](repeating: 1, count: 32))
        var m0 = try initiator.writeMessage(payload: [])
        m0[40] ^= 1
        #expect(throws: NoiseError.decryptFailed) { try responder.readMessage(m0) }
    }

    @Test func aDifferentPrologueOrKeyIsRefused() throws {
        for (prologue, psk) in [([UInt8]([1]), [UInt8](repeating: 1, count: 32)),
                                ([UInt8]([0]), [UInt8](repeating: 2, count: 32))] {
            var initiator = NoiseHandshake(role: .initiator, prologue: [0], psk: [UInt8](repeating: 1, count: 32))
            var responder = NoiseHandshake(role: .responder, prologue: prologue, psk: psk)
            let m0 = try initiator.writeMessage(payload: [])
            #expect(throws: NoiseError.decryptFailed) { try responder.readMessage(m0) }
        }
    }

    @Test func theLastNonceIsNeverUsed() throws {
        var cipher = NoiseCipherState()
        cipher.initializeKey([UInt8](repeating: 9, count: 32))
        cipher.setNonce(UInt64.max - 1)
        var out: [UInt8] = []
        try [UInt8]([1]).withUnsafeBytes { try cipher.encrypt(ad: [], plaintext: $0, into: &out) }
        #expect(throws: NoiseError.nonceExhausted) {
            try [UInt8]([1]).withUnsafeBytes { try cipher.encrypt(ad: [], plaintext: $0, into: &out) }
        }
    }
}

struct HexError: Error {}

func hex(_ string: String) throws -> [UInt8] {
    let chars = Array(string.utf8)
    guard chars.count % 2 == 0 else { throw HexError() }
    return try stride(from: 0, to: chars.count, by: 2).map { i in
        guard let byte = UInt8(String(decoding: chars[i..<i + 2], as: UTF8.self), radix: 16) else { throw HexError() }
        return byte
    }
}
