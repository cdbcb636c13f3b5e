import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Noise's CipherState (spec §5.1) for ChaChaPoly: a key and a 64-bit
/// counter nonce. Before a key is set, "encryption" passes bytes through, as
/// the spec says; NNpsk0 sets a key before its first payload, so Skiff never
/// sends a payload in the clear.
struct NoiseCipherState {
    static let tagLength = 16
    /// 2^64-1 is reserved by the spec; refusing it (instead of wrapping)
    /// means a nonce is never reused, however long a stream runs.
    static let maxNonce = UInt64.max

    private(set) var key: SymmetricKey?
    private(set) var nonce: UInt64 = 0

    init(key: SymmetricKey? = nil) {
        self.key = key
    }

    var hasKey: Bool { key != nil }

    mutating func initializeKey(_ bytes: [UInt8]) {
        key = SymmetricKey(data: bytes)
        nonce = 0
    }

    /// For tests only: pretend `nonce` messages were already sent.
    mutating func setNonce(_ n: UInt64) { nonce = n }

    /// ChaChaPoly's 96-bit nonce: 32 zero bits, then the counter little-endian.
    private func chachaNonce() throws -> ChaChaPoly.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        var n = nonce
        for i in 4..<12 {
            bytes[i] = UInt8(truncatingIfNeeded: n)
            n >>= 8
        }
        return try ChaChaPoly.Nonce(data: bytes)
    }

    private func ensureNonceLeft() throws {
        guard nonce < Self.maxNonce else { throw NoiseError.nonceExhausted }
    }

    /// Appends ciphertext ‖ tag (or the plaintext, without a key) to `out`.
    mutating func encrypt(ad: [UInt8], plaintext: UnsafeRawBufferPointer, into out: inout [UInt8]) throws {
        guard key != nil else {
            out.append(contentsOf: plaintext)
            return
        }
        try seal(ad: ad, plaintext: plaintext).withUnsafeBytes {
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[Self.nonceLength...]))
        }
    }

    static let nonceLength = 12

    /// Encrypts with the key (which must be set): swift-crypto's combined form,
    /// a 12-byte nonce, then ciphertext ‖ tag. The transport sends from this
    /// directly (minus the nonce, which Noise keeps implicit), saving a copy.
    mutating func seal(ad: [UInt8], plaintext: UnsafeRawBufferPointer) throws -> Data {
        guard let key else { throw NoiseError.malformed("no key") }
        try ensureNonceLeft()
        let box = try ChaChaPoly.seal(plaintext, using: key, nonce: chachaNonce(), authenticating: ad)
        nonce += 1
        return box.combined
    }

    /// Decrypts ciphertext ‖ tag and appends the plaintext to `out`; on an
    /// authentication failure throws and leaves the nonce as it was.
    mutating func decrypt(ad: [UInt8], ciphertext: UnsafeRawBufferPointer, into out: inout [UInt8]) throws {
        guard key != nil else {
            out.append(contentsOf: ciphertext)
            return
        }
        try open(ad: ad, ciphertext: ciphertext).withUnsafeBytes { out.append(contentsOf: $0) }
    }

    /// Decrypts with the key (which must be set) and returns the plaintext.
    mutating func open(ad: [UInt8], ciphertext: UnsafeRawBufferPointer) throws -> Data {
        guard let key else { throw NoiseError.malformed("no key") }
        try ensureNonceLeft()
        guard ciphertext.count >= Self.tagLength else { throw NoiseError.decryptFailed }
        let split = ciphertext.count - Self.tagLength
        let plaintext: Data
        do {
            let box = try ChaChaPoly.SealedBox(nonce: chachaNonce(),
                                               ciphertext: UnsafeRawBufferPointer(rebasing: ciphertext[..<split]),
                                               tag: UnsafeRawBufferPointer(rebasing: ciphertext[split...]))
            plaintext = try ChaChaPoly.open(box, using: key, authenticating: ad)
        } catch {
            throw NoiseError.decryptFailed
        }
        nonce += 1
        return plaintext
    }
}
