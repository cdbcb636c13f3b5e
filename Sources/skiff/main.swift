import Posix
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// The `skiff` executable: argument parsing and wiring only.
struct Skiff: ParsableCommand {
    /// Reported by `--version` and `vmm.ping`.
    static let version = "0.3.0"
    static let configuration = CommandConfiguration(
        commandName: "skiff",
        abstract: "A small KVM virtual machine monitor.",
        version: version,
        subcommands: [RunCommand.self, ImageCommand.self, MigrationKeyCommand.self, SeccompSelfTest.self] + apiClientCommands)
}

func printError(_ message: String) {
    var line = message
    if !line.hasSuffix("\n") { line += "\n" }
    StandardError.write(line)
}

// Errors end as one line on stderr and a non-zero status, never a trap.
do {
    var command = try Skiff.parseAsRoot()
    try command.run()
} catch let exit as ExitCode {
    Glibc.exit(exit.rawValue)
} catch {
    let code = Skiff.exitCode(for: error)
    if code == .success {
        Skiff.exit(withError: error)  // --help and --version print and exit 0
    }
    printError("skiff: error: \(Skiff.message(for: error))")
    Glibc.exit(code == .validationFailure ? 2 : 1)
}
