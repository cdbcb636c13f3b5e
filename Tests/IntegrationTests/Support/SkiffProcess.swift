import Foundation

/// Runs the built `skiff` binary as a child process with a time limit and
/// collects what it printed.
struct SkiffRun {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
    var seconds: Double

    /// Console lines; "\r\n" is one Character in Swift, so split on any newline.
    var lines: [Substring] { stdout.split(whereSeparator: { $0.isNewline }) }
}

enum SkiffProcess {
    /// The repository root, from this file's location.
    static let repoRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `skiff` next to the test bundle (same build folder), or $SKIFF_BIN.
    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["SKIFF_BIN"] { return URL(fileURLWithPath: path) }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("skiff")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return repoRoot.appendingPathComponent(".build/debug/skiff")
    }

    /// - Parameter stopWhen: ends the run early (SIGTERM) once stdout contains this text.
    static func run(_ arguments: [String], timeout: Double, stdin: FileHandle? = nil, stopWhen: String? = nil) throws -> SkiffRun {
        try runTool(binary, arguments, timeout: timeout, stdin: stdin, stopWhen: stopWhen)
    }

    static func runTool(_ tool: URL, _ arguments: [String], timeout: Double, stdin: FileHandle? = nil,
                        stopWhen: String? = nil) throws -> SkiffRun {
        let process = Process()
        process.executableURL = tool
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = stdin ?? FileHandle(forReadingAtPath: "/dev/null")
        let started = Date()
        try process.run()
        // Drain the pipes while waiting so a chatty guest cannot block on a full pipe.
        // Sound because: `out` and `err` are touched only with `lock` held.
        final class Collected: @unchecked Sendable {
            let lock = NSLock()
            var out = Data(), err = Data()
            func append(_ data: Data, toError: Bool) {
                lock.lock(); if toError { err.append(data) } else { out.append(data) }; lock.unlock()
            }
            func contains(_ text: String) -> Bool {
                lock.lock(); defer { lock.unlock() }
                return String(decoding: out, as: UTF8.self).contains(text)
            }
        }
        let collected = Collected()
        let group = DispatchGroup()
        for (pipe, isError) in [(out, false), (err, true)] {
            group.enter()
            DispatchQueue.global().async {
                while true {
                    let data = pipe.fileHandleForReading.availableData
                    if data.isEmpty { break }
                    collected.append(data, toError: isError)
                }
                group.leave()
            }
        }
        var timedOut = false
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if let stopWhen, collected.contains(stopWhen) {
                process.terminate()
                break
            }
            if Date() > deadline {
                timedOut = true
                process.terminate()
                usleep(200_000)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        group.wait()
        return SkiffRun(status: process.terminationStatus,
                        stdout: String(decoding: collected.out, as: UTF8.self),
                        stderr: String(decoding: collected.err, as: UTF8.self),
                        timedOut: timedOut, seconds: Date().timeIntervalSince(started))
    }
}

/// What the tests need from the host, with the reason when it is missing.
enum Host {
    static var kvmUsable: Bool {
        FileManager.default.isReadableFile(atPath: "/dev/kvm") && FileManager.default.isWritableFile(atPath: "/dev/kvm")
    }
    static var isPVM: Bool { FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm") }
}
