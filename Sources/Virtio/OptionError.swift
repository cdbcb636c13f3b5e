/// A malformed `--disk` or `--net` option, with a message for the user.
public struct OptionError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
