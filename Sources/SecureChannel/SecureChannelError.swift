/// Why a secure channel could not be set up. Once set up, a channel reports
/// failures as `ByteStreamError` (authentication failures as `.corrupt`), and
/// a peer silent for its `idleTimeout` as `.idle`.
public enum SecureChannelError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The handshake failed authentication: the peer holds another key (or
    /// someone on the path altered or replayed handshake messages).
    case wrongKey
    /// The peer closed the connection before the handshake finished (a peer
    /// with another key does so on the responder side).
    case peerClosedDuringHandshake
    /// The handshake did not finish in time.
    case timedOut(Duration)
    /// Handshake bytes that break the protocol's framing.
    case malformedHandshake(String)
    /// After the handshake: the peer sent or took nothing for this long.
    case idle(Duration)

    public var description: String {
        switch self {
        case .wrongKey:
            return "migration handshake failed: the peer does not hold the same migration key"
        case .peerClosedDuringHandshake:
            return "migration handshake failed: the peer closed the connection (does it hold the same migration key?)"
        case .timedOut(let timeout):
            return "migration handshake failed: no answer from the peer within \(timeout)"
        case .malformedHandshake(let why):
            return "migration handshake failed: \(why)"
        case .idle(let limit):
            return "the peer sent or took nothing for \(limit)"
        }
    }
}
