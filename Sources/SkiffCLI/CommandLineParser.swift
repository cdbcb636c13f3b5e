/// Parses `skiff`'s command line against a tree of `Command`s: finds the
/// subcommand, then its options (`--name VALUE`, `--name=VALUE`, repeated
/// options, flags, `-X` short flags, `--` before positional arguments), checks
/// each value, and reports what to do. Errors are `UsageError`s that name the
/// option and point at the command's `--help`.
///
/// A plain loop over the declared options: no reflection, no property
/// wrappers, so a process start pays nothing for the runtime's first-time
/// conformance scans (docs/performance.md).
public struct CommandLineParser: Sendable {
    public enum Outcome {
        /// Run this command with these arguments.
        case run(Command, ParsedArguments)
        /// Print this text on stdout and exit 0 (`--help`, `help`, a group command alone).
        case help(String)
        /// Print the version on stdout and exit 0.
        case version(String)
    }

    public let root: Command
    public let version: String

    public init(root: Command, version: String) {
        self.root = root
        self.version = version
    }

    /// `arguments` without the program name.
    public func parse(_ arguments: [String]) throws -> Outcome {
        var path = [root]
        var index = 0
        // `skiff help [SUBCOMMAND…]`
        if !root.subcommands.isEmpty, arguments.first == "help" {
            for name in arguments.dropFirst() {
                guard let next = path.last!.subcommand(named: name) else {
                    throw UsageError("unknown subcommand '\(name)'", commandPath: Self.name(of: path))
                }
                path.append(next)
            }
            return .help(HelpFormatter.help(for: path))
        }
        while index < arguments.count, let next = path.last!.subcommand(named: arguments[index]) {
            path.append(next)
            index += 1
        }
        let command = path.last!
        let commandPath = Self.name(of: path)
        let rest = arguments[index...]
        // --help and --version win over anything else before `--`, as they always have.
        for argument in rest {
            if argument == "--" { break }
            if argument == "-h" || argument == "--help" { return .help(HelpFormatter.help(for: path)) }
            if argument == "--version" { return .version(version) }
        }
        guard command.run != nil else {
            guard let first = rest.first else { return .help(HelpFormatter.help(for: path)) }
            let what = first.hasPrefix("-") ? "unknown option '\(first)'" : "unknown subcommand '\(first)'"
            throw UsageError(what, commandPath: commandPath)
        }
        return .run(command, try Self.parseOptions(Array(rest), of: command, commandPath: commandPath))
    }

    /// "skiff image info". Concatenated by hand: `joined(separator:)` is generic over
    /// `StringProtocol` elements and costs a first-time conformance lookup (~0.3 M instructions).
    static func name(of path: [Command]) -> String {
        var name = ""
        for command in path { name += name.isEmpty ? command.name : " " + command.name }
        return name
    }

    private static func parseOptions(_ arguments: [String], of command: Command,
                                     commandPath: String) throws -> ParsedArguments {
        func fail(_ message: String) -> UsageError { UsageError(message, commandPath: commandPath) }
        // Arrays, not Dictionary/Set: a handful of entries, and instantiating a
        // `[String: [String]]` costs more at start-up than the whole parse (docs/performance.md).
        var values: [(name: String, value: String)] = []
        var flags: [String] = []
        var positionals: [String] = []
        var onlyPositionals = false
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if onlyPositionals || argument == "-" || !argument.hasPrefix("-") {
                positionals.append(argument)
                continue
            }
            if argument == "--" {
                onlyPositionals = true
                continue
            }
            let option: Option
            var inline: String?
            if argument.hasPrefix("--") {
                let body = argument.dropFirst(2)
                let name: Substring
                if let equals = body.firstIndex(of: "=") {
                    name = body[..<equals]
                    inline = String(body[body.index(after: equals)...])
                } else {
                    name = body
                }
                guard let found = command.option(long: String(name)) else {
                    throw fail("unknown option '--\(name)'")
                }
                option = found
            } else {
                let letters = argument.dropFirst()
                guard letters.count == 1, let found = command.option(short: letters.first!) else {
                    throw fail("unknown option '\(argument)'")
                }
                option = found
            }
            if option.kind == .flag {
                if inline != nil { throw fail("--\(option.name) takes no value") }
                flags.append(option.name)
                continue
            }
            let value: String
            if let inline {
                value = inline
            } else if index < arguments.count, takesAsValue(arguments[index]) {
                value = arguments[index]
                index += 1
            } else {
                throw fail("missing value for '\(option.synopsis)'")
            }
            if let refusal = option.refusal(of: value) { throw fail(refusal) }
            values.append((option.name, value))
        }
        for option in command.options where option.isRequired && !values.contains(where: { $0.name == option.name }) {
            throw fail("missing '\(option.synopsis)'")
        }
        if positionals.count < command.positionals.count {
            throw fail("missing '<\(command.positionals[positionals.count].name)>'")
        }
        if positionals.count > command.positionals.count {
            throw fail("unexpected argument '\(positionals[command.positionals.count])'")
        }
        return ParsedArguments(commandPath: commandPath, options: command.options, values: values, flags: flags,
                               positionals: Array(zip(command.positionals.map { $0.name }, positionals)))
    }

    /// The argument after `--name` is its value unless it looks like another
    /// option; "-" and negative numbers are values.
    private static func takesAsValue(_ next: String) -> Bool {
        !next.hasPrefix("-") || next == "-" || Int64(next) != nil
    }
}
