import API
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The `skiff ping|info|pause|resume|shutdown|reboot` subcommands: the built binary,
/// run as a child process against a server in this test process.
struct CLITests {
    /// `skiff` from the same build folder as this test bundle (or $SKIFF_BIN).
    static let binary: String? = {
        if let path = ProcessInfo.processInfo.environment["SKIFF_BIN"] { return path }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("skiff").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }()

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func skiff(_ arguments: [String]) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(binary, "build skiff first (swift build)"))
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                   stderr: String(decoding: stderr, as: UTF8.self))
    }

    @Test(.enabled(if: binary != nil, "the skiff binary is built by `swift build`"))
    func successfulCommandsExit0() throws {
        try withServer { s in
            let ping = try Self.skiff(["ping", "--api-socket", s.path])
            #expect(ping.status == 0)
            #expect(ping.stdout == "0.0.0-test\n")
            #expect(ping.stderr.isEmpty)

            let info = try Self.skiff(["info", "--api-socket", s.path])
            #expect(info.status == 0)
            #expect(info.stdout.contains("\n  \"config\" : {"), "not pretty: \(info.stdout)")
            #expect(try JSONDecoder().decode(VMInfo.self, from: Data(info.stdout.utf8)) == s.vm.info())

            for (command, state) in [("pause", "Paused"), ("resume", "Running"), ("reboot", "Running"),
                                     ("shutdown", "Shutdown")] {
                let run = try Self.skiff([command, "--api-socket", s.path])
                #expect(run.status == 0, "\(command): \(run.stderr)")
                #expect(run.stdout.isEmpty && run.stderr.isEmpty)
                #expect(s.fake.state == state, "\(command)")
            }
        }
    }

    @Test(.enabled(if: binary != nil, "the skiff binary is built by `swift build`"))
    func refusedTransitionIsOneLineWithTheServersMessage() throws {
        try withServer { s in
            try s.client.pause()
            let run = try Self.skiff(["pause", "--api-socket", s.path])
            #expect(run.status == 1)
            #expect(run.stderr == "skiff: error: cannot pause: the VM is already paused\n")
            #expect(run.stdout.isEmpty)
            try s.client.resume()
            let resume = try Self.skiff(["resume", "--api-socket", s.path])
            #expect(resume.stderr == "skiff: error: cannot resume: the VM is not paused (Running)\n")
        }
    }

    @Test(.enabled(if: binary != nil, "the skiff binary is built by `swift build`"))
    func noSocketAndVMGone() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let missing = directory + "/missing.sock"
        let none = try Self.skiff(["info", "--api-socket", missing])
        #expect(none.status == 1)
        #expect(none.stderr == "skiff: error: no skiff API at \(missing)\n")

        // A socket file with nobody listening: the skiff that made it has died.
        let s = try TestServer()
        #expect(link(s.path, directory + "/dead.sock") == 0)
        s.server.stop()
        let gone = try Self.skiff(["pause", "--api-socket", directory + "/dead.sock"])
        #expect(gone.status == 1)
        #expect(gone.stderr == "skiff: error: the VM at \(directory)/dead.sock is gone (connection refused)\n")
    }

    @Test(.enabled(if: binary != nil, "the skiff binary is built by `swift build`"))
    func helpHasAnExampleAndBadUsageExits2() throws {
        for command in ["ping", "info", "pause", "resume", "shutdown", "reboot"] {
            let help = try Self.skiff([command, "--help"])
            #expect(help.status == 0)
            #expect(help.stdout.contains("Example:\n"), "\(command)")
            #expect(help.stdout.contains("skiff \(command) --api-socket"), "\(command)")
            let usage = try Self.skiff([command])
            #expect(usage.status == 2)
            #expect(usage.stderr.hasPrefix("skiff: error:") && usage.stderr.contains("--api-socket"), "\(command)")
        }
    }
}
