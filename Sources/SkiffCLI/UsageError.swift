/// The command line itself is wrong (unknown option, missing or bad value):
/// `skiff: error: MESSAGE (see 'skiff run --help')`, exit status 2.
public struct UsageError: Error, Equatable, CustomStringConvertible {
    public let message: String
    /// "skiff run": the command whose `--help` the hint points at.
    public let commandPath: String

    public init(_ message: String, commandPath: String) {
        self.message = message
        self.commandPath = commandPath
    }

    public var description: String { "\(message) (see '\(commandPath) --help')" }
}
