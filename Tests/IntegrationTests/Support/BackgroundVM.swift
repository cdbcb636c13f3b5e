import Foundation

/// A `skiff run` left running while a test drives it (through its API socket,
/// signals…): stdout and stderr are collected as they come.
final class BackgroundVM {
    let process = Process()
    let output: OutputWatcher
    let errors: OutputWatcher
    private let outPipe = Pipe()
    private let errPipe = Pipe()

    /// - Parameter tool: runs this instead of skiff (e.g. `/usr/bin/env ip netns exec NS skiff …`).
    init(_ arguments: [String], tool: String? = nil) throws {
        process.executableURL = tool.map { URL(fileURLWithPath: $0) } ?? SkiffProcess.binary
        process.arguments = arguments
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        process.standardOutput = outPipe
        process.standardError = errPipe
        try process.run()
        output = OutputWatcher(fd: outPipe.fileHandleForReading.fileDescriptor)
        errors = OutputWatcher(fd: errPipe.fileHandleForReading.fileDescriptor)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        output.stop()
        errors.stop()
    }

    /// Waits for the process to end; its status, or nil after `timeout` seconds.
    func waitForExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// The `count N` values printed so far, whole lines only.
    var counts: [UInt64] {
        let lines = output.text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        return lines.compactMap { $0.hasPrefix("count ") ? UInt64($0.dropFirst(6)) : nil }
    }

    /// Waits until at least `n` count lines are there.
    func waitForCounts(_ n: Int, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if counts.count >= n { return true }
            usleep(5_000)
        }
        return false
    }
}
