/// Why a control request failed; the server maps `kind` to the HTTP status and
/// sends `message` as `{"error": message}`.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// 400: the request itself is wrong.
        case badRequest
        /// 404: the thing asked for does not exist.
        case notFound
        /// 409: not possible in the VM's current state (e.g. pausing a paused VM).
        case conflict
        /// 500: the VMM failed.
        case `internal`
        /// 501: routed, but the VMM cannot do it yet.
        case notImplemented
    }

    public let kind: Kind
    /// One line for a person, e.g. "the VM is already paused".
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// The answer of the routes the VMM does not implement yet.
    public static let notImplementedYet = ControlError(.notImplemented, "not implemented yet")

    /// The HTTP status this error is answered with.
    public var httpStatus: Int {
        switch kind {
        case .badRequest: return 400
        case .notFound: return 404
        case .conflict: return 409
        case .internal: return 500
        case .notImplemented: return 501
        }
    }
}
