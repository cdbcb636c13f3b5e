import SecureChannel
import SkiffCLI

/// `skiff migration-key FILE`: makes the pre-shared key that both ends of a
/// migration load with `--migration-key FILE`.
struct MigrationKeyCommand {
    static let command = Command(
        name: "migration-key",
        abstract: "Create a new migration key file (256 random bits, mode 0600).",
        discussion: """
            Copy the file to the other host over a channel you trust (e.g. scp); both ends of a \
            migration need the same key. An existing file is never overwritten. See docs/migration-security.md.
            """,
        positionals: [Positional("file", help: "The key file to create (must not exist).")],
        run: { try MigrationKeyCommand(file: $0.argument("file")).run() })

    var file: String

    func run() throws {
        try MigrationKey.create(at: file)
        print("wrote a new migration key to '\(file)' (mode 0600); copy it to the other host to migrate between the two")
    }
}
