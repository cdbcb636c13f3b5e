/// Why an API request failed, worded for the `skiff: error: …` line.
public enum APIClientError: Error, Equatable, CustomStringConvertible, Sendable {
    /// Nothing at the path (ENOENT): no VM was started with this socket.
    case noServer(path: String)
    /// The socket file is there but nobody accepts: the skiff that made it is gone.
    case refused(path: String)
    /// The server answered with an error status and `{"error": message}`.
    case server(status: Int, message: String)
    /// The connection failed or timed out, or the answer was not HTTP we can read.
    case transport(String)

    public var description: String {
        switch self {
        case .noServer(let path):
            return "no skiff API at \(path)"
        case .refused(let path):
            return "the VM at \(path) is gone (connection refused)"
        case .server(_, let message):
            return message
        case .transport(let message):
            return message
        }
    }
}
