/// A combination of options a command refuses after parsing (`--paused needs
/// --restore`): `skiff: error: MESSAGE`, exit status 2, like a usage error.
public struct ValidationError: Error, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
