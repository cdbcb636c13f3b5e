import API
import ArgumentParser
import Foundation

/// `--api-socket PATH` and the client's time limit, shared by the client subcommands.
struct APIClientOptions: ParsableArguments {
    @Option(name: .customLong("api-socket"),
            help: ArgumentHelp("The socket of a running `skiff run --api-socket PATH`.", valueName: "path"))
    var apiSocket: String

    @Option(help: ArgumentHelp("Seconds to wait for the answer.", valueName: "seconds"))
    var timeout: Int = 60

    func validate() throws {
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

struct PingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ping", abstract: "Check that a skiff answers on its API socket; print its version.",
        discussion: discussion("Prints the version of the skiff serving the socket (vmm.ping).", "ping"))

    @OptionGroup var options: APIClientOptions

    func run() throws {
        try APICommandError.wrap(nil) { print(try options.client.ping().version) }
    }
}

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Print the VM's state, configuration and counters as JSON.",
        discussion: discussion("Prints vm.info, pretty-printed: state, config (kernel, cpus, memory, disks, net) "
            + "and counters.", "info"))

    @OptionGroup var options: APIClientOptions

    func run() throws {
        try APICommandError.wrap(nil) {
            let info = try options.client.info()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(info), as: UTF8.self))
        }
    }
}

/// The state-changing subcommands: one PUT each, silent on success.
struct PauseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause", abstract: "Pause the VM's vCPUs.",
        discussion: discussion("Fails if the VM is not running.", "pause"))
    @OptionGroup var options: APIClientOptions
    func run() throws { try APICommandError.wrap("pause") { try options.client.pause() } }
}

struct ResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Resume a paused VM.",
        discussion: discussion("Fails if the VM is not paused.", "resume"))
    @OptionGroup var options: APIClientOptions
    func run() throws { try APICommandError.wrap("resume") { try options.client.resume() } }
}

struct ShutdownCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shutdown", abstract: "Shut the VM down; its skiff exits 0.",
        discussion: discussion("Ends the VM (vm.shutdown); the skiff serving the socket exits once it has answered.",
                               "shutdown"))
    @OptionGroup var options: APIClientOptions
    func run() throws { try APICommandError.wrap("shut down") { try options.client.shutdown() } }
}

struct RebootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reboot", abstract: "Reboot the VM.",
        discussion: discussion("Restarts the guest (vm.reboot).", "reboot"))
    @OptionGroup var options: APIClientOptions
    func run() throws { try APICommandError.wrap("reboot") { try options.client.reboot() } }
}

/// Registered in main.swift.
/// `skiff snapshot --api-socket PATH DIR`: `vm.snapshot` with `file:///DIR` (absolute).
struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Snapshot the VM into a new directory; the VM goes on (or stays paused).",
        discussion: discussion("Writes the machine state and a sparse memory file into DIR (new or empty); "
            + "restore it with `skiff run --restore DIR`.", "snapshot /tmp/snap"))
    @OptionGroup var options: APIClientOptions
    @Argument(help: ArgumentHelp("Directory to create the snapshot in.", valueName: "dir")) var directory: String
    func run() throws {
        let absolute = URL(fileURLWithPath: directory).standardizedFileURL.path
        let body = try JSONEncoder().encode(SnapshotRequest(destinationURL: "file://" + absolute))
        // On a terminal, a second connection polls vm.info and redraws one progress line.
        let progress = isatty(STDERR_FILENO) == 1 ? SnapshotProgressLine(client: options.client) : nil
        defer { progress?.finish() }
        try APICommandError.wrap("snapshot") { try options.client.put("vm.snapshot", body: body) }
    }
}

let apiClientCommands: [ParsableCommand.Type] = [
    PingCommand.self, InfoCommand.self, PauseCommand.self, ResumeCommand.self, ShutdownCommand.self, RebootCommand.self,
    SnapshotCommand.self, MigrateCommand.self,
]
