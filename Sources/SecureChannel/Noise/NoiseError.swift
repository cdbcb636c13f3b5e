/// What the Noise layer refuses. `SecureChannel` turns these into
/// `ByteStreamError.corrupt` or `SecureChannelError` for its callers.
enum NoiseError: Error, Equatable, CustomStringConvertible {
    /// A ciphertext failed authentication (wrong key, or tampered bytes).
    case decryptFailed
    /// 2^64-1 messages were sent under one key.
    case nonceExhausted
    /// A handshake message too short, or sent out of turn.
    case malformed(String)
    /// The peer's ephemeral key gave an all-zero DH result.
    case invalidPublicKey

    var description: String {
        switch self {
        case .decryptFailed: return "authentication failed"
        case .nonceExhausted: return "nonce space exhausted"
        case .malformed(let why): return "malformed handshake: \(why)"
        case .invalidPublicKey: return "invalid public key from the peer"
        }
    }
}
