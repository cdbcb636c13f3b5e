/// A reliable, ordered byte stream between two processes: a TCP socket as it
/// is, or one wrapped in authenticated encryption. The migration code speaks
/// only to this, so the transport (plain or encrypted) is chosen in one place.
///
/// Implementations are used by one thread at a time per direction.
public protocol ByteStream: AnyObject {
    /// Writes all of `bytes` (may buffer; see `flush`), or throws.
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Fills all of `buffer`, or throws; a stream that ends first throws
    /// `ByteStreamError.endOfStream`.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws
    /// Sends whatever `write` buffered.
    func flush() throws
    /// Ends the stream in both directions; later calls throw.
    func close()
}

public enum ByteStreamError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The peer closed the stream before the expected bytes arrived.
    case endOfStream
    /// The stream was closed on this side.
    case closed
    /// Bytes that fail authentication, or framing that breaks the rules.
    case corrupt(String)

    public var description: String {
        switch self {
        case .endOfStream: return "the peer closed the connection"
        case .closed: return "the connection is closed"
        case .corrupt(let why): return "corrupt stream: \(why)"
        }
    }
}
