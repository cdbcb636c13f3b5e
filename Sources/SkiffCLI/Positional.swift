/// A required positional argument (`skiff image info FILE`).
public struct Positional: Sendable {
    /// Shown as `<name>`; also the key `ParsedArguments.argument(_:)` takes.
    public let name: String
    public let help: String

    public init(_ name: String, help: String) {
        self.name = name
        self.help = help
    }
}
