/// Thrown to end the process with this status and no further message (the
/// command has printed what it had to say).
public struct ExitCode: Error, Equatable, CustomStringConvertible {
    public let rawValue: Int32

    public init(_ rawValue: Int32) {
        self.rawValue = rawValue
    }

    public static let success = ExitCode(0)
    public static let failure = ExitCode(1)
    public static let usage = ExitCode(2)

    public var description: String { "exit status \(rawValue)" }
}
