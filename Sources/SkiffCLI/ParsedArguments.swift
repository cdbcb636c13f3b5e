/// What `CommandLineParser` found for one command: option values by name, flags,
/// positional arguments. Every value has already passed its option's check, and
/// every required option and positional argument is present.
public struct ParsedArguments: Sendable {
    /// "skiff run": for error hints.
    public let commandPath: String
    let options: [Option]
    /// Every value given, in command-line order.
    let values: [(name: String, value: String)]
    let flags: [String]
    let positionals: [(name: String, value: String)]

    /// The last value given for `name`, else its default, else nil.
    public func string(_ name: String) -> String? {
        let option = declared(name)
        return values.last(where: { $0.name == name })?.value ?? option.defaultValue
    }

    /// Every value of a repeatable option, in the order given.
    public func strings(_ name: String) -> [String] {
        _ = declared(name)
        return values.filter { $0.name == name }.map { $0.value }
    }

    public func flag(_ name: String) -> Bool {
        _ = declared(name)
        return flags.contains(name)
    }

    /// Whether `name` was on the command line (defaults do not count).
    public func isGiven(_ name: String) -> Bool {
        values.contains(where: { $0.name == name }) || flags.contains(name)
    }

    /// An `.integer` or `.unsigned` option as `T`; a value outside `T`'s range is a usage error.
    public func integer<T: FixedWidthInteger>(_ name: String, as: T.Type = T.self) throws -> T? {
        guard let text = string(name) else { return nil }
        guard let value = T(text, radix: 10) else {
            throw UsageError("invalid --\(name) '\(text)': out of range", commandPath: commandPath)
        }
        return value
    }

    /// A positional argument (always present: the parser refuses a command line without it).
    public func argument(_ name: String) -> String {
        guard let value = positionals.first(where: { $0.name == name })?.value else { preconditionFailure("no positional argument <\(name)> declared") }
        return value
    }

    /// Asking for an option the command does not declare is a programming error, caught by the first test that runs it.
    private func declared(_ name: String) -> Option {
        guard let option = options.first(where: { $0.name == name }) else { preconditionFailure("option --\(name) is not declared by '\(commandPath)'") }
        return option
    }
}
