import Foundation
import Testing

/// Bad arguments end with one clear line on stderr and a non-zero status — never
/// a trap (status > 128) or a stack trace. These need no KVM.
struct CommandLineErrorTests {
    static let cases: [(arguments: [String], message: String)] = [
        (["run", "--kernel", "/nonexistent/vmlinux"], "does not exist"),
        (["run", "--kernel", "/etc/hostname"], "neither an ELF"),
        (["run", "--kernel", "/tmp"], "is a directory"),
        (["run", "--kernel", "/etc/hostname", "--memory", "0"], "--memory must be more than 0"),
        (["run", "--kernel", "/etc/hostname", "--memory", "64T"], "more than the host has"),
        (["run", "--kernel", "/etc/hostname", "--memory", "12Q"], "invalid --memory '12Q'"),
        (["run", "--kernel", "/etc/hostname", "--cpus", "0"], "--cpus must be between"),
        (["run", "--kernel", "/etc/hostname", "--cpus=-3"], "--cpus must be between"),
        (["run", "--kernel", "/etc/hostname", "--initrd", "/nonexistent"], "initrd file"),
        (["run"], "--kernel"),
    ]

    @Test(arguments: 0..<cases.count)
    func badArgumentsGiveOneClearLine(index: Int) throws {
        let (arguments, message) = CommandLineErrorTests.cases[index]
        let run = try SkiffProcess.run(arguments, timeout: 30)
        #expect(run.status != 0)
        #expect(run.status < 128, "skiff died from a signal")
        let lines = run.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(run.stderr)")
        #expect(run.stderr.hasPrefix("skiff: error:"))
        #expect(run.stderr.contains(message), "stderr: \(run.stderr)")
    }

    @Test func truncatedKernelIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-trunc-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try Data(contentsOf: URL(fileURLWithPath: try Firmware.path("hello")))
        let truncated = dir.appendingPathComponent("hello-truncated.elf")
        try source.prefix(200).write(to: truncated)
        let run = try SkiffProcess.run(["run", "--kernel", truncated.path, "--memory", "64M"], timeout: 30)
        #expect(run.status == 1)
        #expect(run.stderr.hasPrefix("skiff: error:"), "stderr: \(run.stderr)")
    }
}
