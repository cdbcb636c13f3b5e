import Foundation

/// Runs host tools (qemu-img, qemu-io, ip) for the device tests.
enum Shell {
    struct Failed: Error, CustomStringConvertible {
        let command: String
        let output: String
        var description: String { "\(command) failed:\n\(output)" }
    }

    @discardableResult
    static func run(_ command: String, timeout: Double = 60) throws -> String {
        let result = try SkiffProcess.runTool(URL(fileURLWithPath: "/bin/sh"), ["-c", command], timeout: timeout)
        guard result.status == 0 else { throw Failed(command: command, output: result.stdout + result.stderr) }
        return result.stdout
    }

    static func has(_ tool: String) -> Bool {
        (try? run("command -v \(tool)")) != nil
    }

    static var isRoot: Bool { getuid() == 0 }

    /// A fresh temporary directory, removed by the caller.
    static func temporaryDirectory(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}
