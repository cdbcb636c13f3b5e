import CChaChaPoly

/// One direction of the channel after the handshake: Noise's CipherState
/// (ChaChaPoly, 64-bit counter nonce) sealing and opening in the caller's
/// memory through BoringSSL's AEAD (`CChaChaPoly`), with the key set up once.
/// The handshake itself keeps `NoiseCipherState` (swift-crypto's API); both
/// produce the same bytes (`SecureChannelTests` checks it message by message).
final class TransportCipher {
    static let tagLength = Int(CCHACHAPOLY_TAG_LENGTH)
    private let context: OpaquePointer
    /// The next message's nonce; 2^64-1 is never used (Noise reserves it).
    private(set) var nonce: UInt64

    /// Takes over `state`'s key and nonce. Throws if it has no key.
    init(_ state: NoiseCipherState) throws {
        guard let key = state.key else { throw NoiseError.malformed("no key") }
        let made = key.withUnsafeBytes { (k: UnsafeRawBufferPointer) -> OpaquePointer? in
            guard k.count == Int(CCHACHAPOLY_KEY_LENGTH) else { return nil }
            return cchachapoly_new(k.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        guard let made else { throw NoiseError.malformed("cannot set up the transport cipher") }
        context = made
        nonce = state.nonce
    }

    deinit { cchachapoly_free(context) }

    /// Seals `plaintext` into `out`: ciphertext, then the tag (`plaintext.count + tagLength` bytes).
    func seal(_ plaintext: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) throws {
        guard nonce < NoiseCipherState.maxNonce else { throw NoiseError.nonceExhausted }
        let ok = cchachapoly_seal(context, nonce, out.assumingMemoryBound(to: UInt8.self),
                                  plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self), plaintext.count)
        guard ok == 1 else { throw NoiseError.malformed("the cipher refused to seal") }
        nonce += 1
    }

    /// Opens `message` (ciphertext ‖ tag) into `out` (`message.count - tagLength`
    /// bytes; may be the message's own bytes). On a wrong tag throws
    /// `decryptFailed`, leaves the nonce as it was, and `out` holds garbage.
    func open(_ message: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) throws {
        guard nonce < NoiseCipherState.maxNonce else { throw NoiseError.nonceExhausted }
        guard message.count >= Self.tagLength else { throw NoiseError.decryptFailed }
        let length = message.count - Self.tagLength
        let base = message.baseAddress!.assumingMemoryBound(to: UInt8.self)
        guard cchachapoly_open(context, nonce, out.assumingMemoryBound(to: UInt8.self), base, length, base + length) == 1 else {
            throw NoiseError.decryptFailed
        }
        nonce += 1
    }
}
