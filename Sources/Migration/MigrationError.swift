/// Why a migration failed, as one line for a person.
public struct MigrationError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// Bad arguments (address, key options).
        case usage
        /// Connect, accept, send or receive failed.
        case connection
        /// The peer went silent.
        case timeout
        /// The stream broke the protocol's rules (hostile or corrupt input).
        case malformed
        /// The destination refused (version, CPU, sizes, devices); the text is its reason.
        case refused
        /// The source gave up and said so.
        case abandoned
        /// This side could not carry on (KVM, memory).
        case failed
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
