import API
import FoundationEssentials
import SkiffCLI
#if canImport(Glibc)
import Glibc
#endif

/// `--api-socket PATH` and the client's time limit, shared by the client subcommands.
struct APIClientOptions {
    static let options: [Option] = [
        .option("api-socket", value: "path", required: true,
                help: "The socket of a running `skiff run --api-socket PATH`."),
        .option("timeout", value: "seconds", .integer, default: "60", help: "Seconds to wait for the answer."),
    ]

    var apiSocket: String
    var timeout: Int

    init(_ a: ParsedArguments) throws {
        apiSocket = a.string("api-socket")!
        timeout = try a.integer("timeout")!
        guard (1...3600).contains(timeout) else { throw ValidationError("--timeout must be between 1 and 3600 seconds") }
    }

    var client: APIClient { APIClient(path: apiSocket, timeout: timeout) }
}

/// A client failure as the one `skiff: error: …` line main.swift prints.
struct APICommandError: Error, CustomStringConvertible {
    let description: String

    /// "cannot pause: the VM is already paused" for refusals; transport errors as they are.
    static func wrap(_ verb: String?, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as APIClientError {
            if case .server = e, let verb { throw APICommandError(description: "cannot \(verb): \(e)") }
            throw APICommandError(description: e.description)
        }
    }
}

private func discussion(_ what: String, _ command: String) -> String {
    "\(what)\n\nExample:\n  skiff run --kernel vmlinux --api-socket /tmp/vm.sock &\n  skiff \(command) --api-socket /tmp/vm.sock"
}

/// The subcommands that only talk to a running skiff: each builds its `Command`
/// from a name, its help and what to do with the client options.
private func clientCommand(_ name: String, abstract: String, discussion what: String, example: String? = nil,
                           options: [Option] = [], positionals: [Positional] = [],
                           run: @escaping @Sendable (APIClientOptions, ParsedArguments) throws -> Void) -> Command {
    Command(name: name, abstract: abstract, discussion: discussion(what, example ?? name),
            options: APIClientOptions.options + options, positionals: positionals,
            run: { arguments in try run(try APIClientOptions(arguments), arguments) })
}

enum PingCommand {
    static let command = clientCommand(
        "ping", abstract: "Check that a skiff answers on its API socket; print its version.",
        discussion: "Prints the version of the skiff serving the socket (vmm.ping).") { options, _ in
        try APICommandError.wrap(nil) { print(try options.client.ping().version) }
    }
}

enum InfoCommand {
    static let command = clientCommand(
        "info", abstract: "Print the VM's state, configuration and counters as JSON.",
        discussion: "Prints vm.info, pretty-printed: state, config (kernel, cpus, memory, disks, net) and counters.") {
        options, _ in
        try APICommandError.wrap(nil) {
            let info = try options.client.info()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(info), as: UTF8.self))
        }
    }
}

/// The state-changing subcommands: one PUT each, silent on success.
enum PauseCommand {
    static let command = clientCommand("pause", abstract: "Pause the VM's vCPUs.",
                                       discussion: "Fails if the VM is not running.") { options, _ in
        try APICommandError.wrap("pause") { try options.client.pause() }
    }
}

enum ResumeCommand {
    static let command = clientCommand("resume", abstract: "Resume a paused VM.",
                                       discussion: "Fails if the VM is not paused.") { options, _ in
        try APICommandError.wrap("resume") { try options.client.resume() }
    }
}

enum ShutdownCommand {
    static let command = clientCommand(
        "shutdown", abstract: "Shut the VM down; its skiff exits 0.",
        discussion: "Ends the VM (vm.shutdown); the skiff serving the socket exits once it has answered.") { options, _ in
        try APICommandError.wrap("shut down") { try options.client.shutdown() }
    }
}

enum RebootCommand {
    static let command = clientCommand("reboot", abstract: "Reboot the VM.",
                                       discussion: "Restarts the guest (vm.reboot).") { options, _ in
        try APICommandError.wrap("reboot") { try options.client.reboot() }
    }
}

/// `skiff snapshot --api-socket PATH DIR`: `vm.snapshot` with `file:///DIR` (absolute).
enum SnapshotCommand {
    static let command = clientCommand(
        "snapshot", abstract: "Snapshot the VM into a new directory; the VM goes on (or stays paused).",
        discussion: "Writes the machine state and a sparse memory file into DIR (new or empty); "
            + "restore it with `skiff run --restore DIR`.", example: "snapshot /tmp/snap",
        positionals: [Positional("dir", help: "Directory to create the snapshot in.")]) { options, arguments in
        let absolute = URL(fileURLWithPath: arguments.argument("dir")).standardizedFileURL.path
        let body = try JSONEncoder().encode(SnapshotRequest(destinationURL: "file://" + absolute))
        // On a terminal, a second connection polls vm.info and redraws one progress line.
        let progress = isatty(STDERR_FILENO) == 1 ? SnapshotProgressLine(client: options.client) : nil
        defer { progress?.finish() }
        try APICommandError.wrap("snapshot") { try options.client.put("vm.snapshot", body: body) }
    }
}

/// Registered in main.swift.
let apiClientCommands: [Command] = [
    PingCommand.command, InfoCommand.command, PauseCommand.command, ResumeCommand.command, ShutdownCommand.command,
    RebootCommand.command, SnapshotCommand.command, MigrateCommand.command,
]
