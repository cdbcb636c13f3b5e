import Crypto
import Foundation
import Testing
@testable import SecureChannel

/// The channel's transport cipher (BoringSSL's AEAD through `CChaChaPoly`,
/// in place) against the handshake's `NoiseCipherState` (swift-crypto's
/// ChaChaPoly API): the same key and nonce give the same bytes, either way.
@Suite struct TransportCipherTests {
    static let key = (0..<32).map { UInt8($0 &* 7 &+ 1) }

    static func reference(nonce: UInt64) -> NoiseCipherState {
        var state = NoiseCipherState()
        state.initializeKey(key)
        state.setNonce(nonce)
        return state
    }

    @Test(arguments: [0, 1, 15, 16, 17, 4096, 65519])
    func sealsWhatSwiftCryptoSeals(length: Int) throws {
        let plaintext = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 5) }
        for nonce: UInt64 in [0, 1, 2, 0x0102_0304_0506_0708, UInt64.max - 1] {
            var expected: [UInt8] = []
            var reference = Self.reference(nonce: nonce)
            try plaintext.withUnsafeBytes { try reference.encrypt(ad: [], plaintext: $0, into: &expected) }
            let cipher = try TransportCipher(Self.reference(nonce: nonce))
            var sealed = [UInt8](repeating: 0, count: length + TransportCipher.tagLength)
            try plaintext.withUnsafeBytes { p in try sealed.withUnsafeMutableBytes { try cipher.seal(p, into: $0.baseAddress!) } }
            #expect(sealed == expected, "length \(length), nonce \(nonce)")
            #expect(cipher.nonce == nonce + 1)

            // And swift-crypto's message opens here, in place.
            let opener = try TransportCipher(Self.reference(nonce: nonce))
            var message = expected
            try message.withUnsafeMutableBytes { m in try opener.open(UnsafeRawBufferPointer(m), into: m.baseAddress!) }
            #expect(Array(message.prefix(length)) == plaintext)
        }
    }

    @Test func aTamperedMessageIsRefusedAndTheNonceStays() throws {
        let cipher = try TransportCipher(Self.reference(nonce: 5))
        var sealed = [UInt8](repeating: 0, count: 100 + TransportCipher.tagLength)
        try [UInt8](repeating: 42, count: 100).withUnsafeBytes { p in
            try sealed.withUnsafeMutableBytes { try cipher.seal(p, into: $0.baseAddress!) }
        }
        for index in [0, 50, 99, 100, 115] {
            var tampered = sealed
            tampered[index] ^= 1
            let opener = try TransportCipher(Self.reference(nonce: 5))
            var out = [UInt8](repeating: 0, count: 100)
            #expect(throws: NoiseError.decryptFailed) {
                try tampered.withUnsafeBytes { t in try out.withUnsafeMutableBytes { try opener.open(t, into: $0.baseAddress!) } }
            }
            #expect(opener.nonce == 5)
        }
        // The wrong nonce fails too.
        let late = try TransportCipher(Self.reference(nonce: 6))
        var out = [UInt8](repeating: 0, count: 100)
        #expect(throws: NoiseError.decryptFailed) {
            try sealed.withUnsafeBytes { s in try out.withUnsafeMutableBytes { try late.open(s, into: $0.baseAddress!) } }
        }
        // Shorter than a tag.
        #expect(throws: NoiseError.decryptFailed) {
            try [UInt8](repeating: 0, count: 15).withUnsafeBytes { s in
                try out.withUnsafeMutableBytes { try late.open(s, into: $0.baseAddress!) }
            }
        }
    }

    @Test func theLastNonceIsNeverUsed() throws {
        let cipher = try TransportCipher(Self.reference(nonce: UInt64.max - 1))
        var out = [UInt8](repeating: 0, count: 1 + TransportCipher.tagLength)
        try [UInt8]([1]).withUnsafeBytes { p in try out.withUnsafeMutableBytes { try cipher.seal(p, into: $0.baseAddress!) } }
        #expect(throws: NoiseError.nonceExhausted) {
            try [UInt8]([1]).withUnsafeBytes { p in try out.withUnsafeMutableBytes { try cipher.seal(p, into: $0.baseAddress!) } }
        }
    }

    @Test func aStateWithoutAKeyIsRefused() {
        #expect(throws: NoiseError.self) { _ = try TransportCipher(NoiseCipherState()) }
    }
}
