import Posix
import SkiffCLI
#if canImport(Glibc)
import Glibc
#endif

/// The `skiff` executable: argument parsing and wiring only.
enum Skiff {
    /// Reported by `--version` and `vmm.ping`.
    static let version = "0.3.0"
    static let command = Command(
        name: "skiff",
        abstract: "A small KVM virtual machine monitor.",
        subcommands: [RunCommand.command, ImageCommand.command, MigrationKeyCommand.command, SeccompSelfTest.command]
            + apiClientCommands)

    /// The one line an error ends as: its own description, as it always was.
    /// (Foundation's `LocalizedError` is gone with Foundation; no error Skiff throws adopted it.)
    static func message(for error: Error) -> String {
        String(describing: error)
    }
}

func printError(_ message: String) {
    var line = message
    if !line.hasSuffix("\n") { line += "\n" }
    StandardError.write(line)
}

// Errors end as one line on stderr and a non-zero status, never a trap:
// 2 for a bad command line, 1 for a failure, the command's own for ExitCode.
do {
    switch try CommandLineParser(root: Skiff.command, version: Skiff.version).parse(Array(CommandLine.arguments.dropFirst())) {
    case .help(let text):
        print(text)
    case .version(let version):
        print(version)
    case .run(let command, let arguments):
        try command.run!(arguments)
    }
} catch let exit as ExitCode {
    Glibc.exit(exit.rawValue)
} catch let usage as UsageError {
    printError("skiff: error: \(usage)")
    Glibc.exit(2)
} catch let invalid as ValidationError {
    printError("skiff: error: \(invalid)")
    Glibc.exit(2)
} catch {
    printError("skiff: error: \(Skiff.message(for: error))")
    Glibc.exit(1)
}
