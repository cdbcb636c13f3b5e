/// A command or subcommand as plain data: its name, help, the options and
/// positional arguments it takes, and what runs it. `CommandLineParser` picks
/// one out of a tree of these; `HelpFormatter` prints them.
public struct Command: Sendable {
    public let name: String
    /// One line: shown in the parent's subcommand list and as OVERVIEW.
    public let abstract: String
    /// More text for `--help` (paragraphs and indented examples, wrapped when printed).
    public let discussion: String
    public let options: [Option]
    public let positionals: [Positional]
    public let subcommands: [Command]
    /// Left out of the parent's help (test-only commands).
    public let isHidden: Bool
    /// nil for a command that only groups subcommands (`skiff image`): given alone it prints its help.
    public let run: (@Sendable (ParsedArguments) throws -> Void)?

    public init(name: String, abstract: String, discussion: String = "", options: [Option] = [],
                positionals: [Positional] = [], subcommands: [Command] = [], isHidden: Bool = false,
                run: (@Sendable (ParsedArguments) throws -> Void)? = nil) {
        self.name = name
        self.abstract = abstract
        self.discussion = discussion
        self.options = options
        self.positionals = positionals
        self.subcommands = subcommands
        self.isHidden = isHidden
        self.run = run
    }

    func subcommand(named name: String) -> Command? {
        subcommands.first { $0.name == name }
    }

    func option(long name: String) -> Option? {
        options.first { $0.name == name }
    }

    func option(short letter: Character) -> Option? {
        options.first { $0.short == letter }
    }
}
