/// The `--help` text of a command: overview, discussion, usage, arguments,
/// options with their value names, help strings and defaults, subcommands.
/// Wrapped to 80 columns, descriptions in a column from 26.
enum HelpFormatter {
    static let width = 80
    static let column = 26

    /// `path` runs from the root to the command whose help this is.
    static func help(for path: [Command]) -> String {
        let command = path.last!
        let name = CommandLineParser.name(of: path)
        var sections: [String] = []
        sections.append(wrap("OVERVIEW: " + command.abstract, width: width).joined(separator: "\n"))
        if !command.discussion.isEmpty {
            sections.append(command.discussion.split(separator: "\n", omittingEmptySubsequences: false)
                .flatMap { wrap(String($0), width: width) }.joined(separator: "\n"))
        }
        sections.append(usage(of: command, name: name))
        if !command.positionals.isEmpty {
            sections.append((["ARGUMENTS:"] + command.positionals.flatMap { row("<\($0.name)>", $0.help) })
                .joined(separator: "\n"))
        }
        var options = command.options.flatMap { option in
            let label = (option.short.map { "-\($0), " } ?? "") + option.synopsis
            return row(label, option.help + (option.defaultValue.map { " (default: \($0))" } ?? ""))
        }
        options += row("--version", "Show the version.") + row("-h, --help", "Show help information.")
        sections.append((["OPTIONS:"] + options).joined(separator: "\n"))
        let shown = command.subcommands.filter { !$0.isHidden }
        if !shown.isEmpty {
            sections.append((["SUBCOMMANDS:"] + shown.flatMap { row($0.name, $0.abstract) }
                             + ["", "  See '\(helpPrefix(path)) <subcommand>' for detailed help."])
                .joined(separator: "\n"))
        }
        return sections.joined(separator: "\n\n") + "\n"
    }

    /// "skiff help" for the root, "skiff help image" below it.
    private static func helpPrefix(_ path: [Command]) -> String {
        ([path[0].name, "help"] + path.dropFirst().map { $0.name }).joined(separator: " ")
    }

    /// `USAGE: skiff run [--kernel <path>] … <file>`, wrapped under its first word after the command.
    static func usage(of command: Command, name: String) -> String {
        var items: [String]
        if !command.subcommands.isEmpty && command.run == nil {
            items = ["<subcommand>"]
        } else {
            items = command.options.map { option in
                switch option.kind {
                case .flag: return "[\(option.synopsis)]"
                case .repeated: return "[\(option.synopsis) ...]"
                case .single: return option.isRequired ? option.synopsis : "[\(option.synopsis)]"
                }
            }
            items += command.positionals.map { "<\($0.name)>" }
        }
        let lead = "USAGE: \(name) "
        let indent = String(repeating: " ", count: lead.count)
        var lines: [String] = []
        var line = lead
        for item in items {
            if line.count + item.count > width && line != lead && line != indent {
                lines.append(String(line.dropLast()))
                line = indent
            }
            line += item + " "
        }
        lines.append(String(line.dropLast()))
        return lines.joined(separator: "\n")
    }

    /// `  --label <v>             text…`; a label too long for the column gets a line of its own.
    static func row(_ label: String, _ text: String) -> [String] {
        let pad = String(repeating: " ", count: column)
        let body = wrap(text, width: width - column).map { pad + $0 }
        let head = "  " + label
        if head.count + 2 <= column, let first = body.first {
            return [head + String(repeating: " ", count: column - head.count) + first.dropFirst(column)]
                + body.dropFirst()
        }
        return [head] + body
    }

    /// Greedy word wrap; a line's leading spaces indent its continuation lines
    /// (examples in discussions stay readable). A word longer than the width stands alone.
    static func wrap(_ text: String, width: Int) -> [String] {
        let indent = String(text.prefix { $0 == " " })
        let words = text.split(separator: " ")
        guard !words.isEmpty else { return [text] }
        var lines: [String] = []
        var line = indent
        for word in words {
            if line.count > indent.count && line.count + 1 + word.count > width {
                lines.append(line)
                line = indent
            }
            line += (line.count > indent.count ? " " : "") + word
        }
        lines.append(line)
        return lines
    }
}
