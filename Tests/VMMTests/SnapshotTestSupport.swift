import Foundation
import Posix
@testable import VMM

/// Helpers for the snapshot tests: the built `skiff` binary run as a child,
/// the `count` firmware's state read from a snapshot's memory file, and the
/// check that restored output continues a count sequence exactly.
enum SnapshotSupport {
    /// The firmware's state page (see firmware/count/count.c).
    static let counterAddress: UInt64 = 0x200000
    static let linesAddress: UInt64 = 0x200018

    /// `skiff` in the build folder the test bundle lives in, or $SKIFF_BIN.
    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["SKIFF_BIN"] { return URL(fileURLWithPath: path) }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("skiff")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return PauseResumeTests.repoRoot.appendingPathComponent(".build/debug/skiff")
    }

    static func temporaryDirectory(_ name: String) -> URL {
        URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("skiff-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    }

    /// A little-endian UInt64 at a guest-physical address below the MMIO hole,
    /// read from a snapshot's memory file (range 0 starts at file offset 0).
    static func guestWord(_ address: UInt64, inSnapshot dir: URL) throws -> UInt64 {
        let handle = try FileHandle(forReadingFrom: dir.appendingPathComponent("memory"))
        defer { try? handle.close() }
        try handle.seek(toOffset: address)
        let data = try handle.read(upToCount: 8) ?? Data()
        guard data.count == 8 else { throw CocoaError(.fileReadCorruptFile) }
        return data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    }

    /// True when `output` (from a restore) continues the sequence of a
    /// `count.every=every` guest whose memory said `lines` lines were printed.
    /// The firmware counts a line after printing it, so at the snapshot line
    /// `lines + 1` may be unprinted, half printed or wholly printed: the output
    /// must start inside it (or right after it), and then every line follows
    /// with no gap and no repeat, for at least `atLeast` whole lines. (A
    /// snapshot taken while paused, with the original's output known, gets the
    /// exact check, `isExactSequence`.)
    static func continues(_ output: String, afterLine lines: UInt64, every: UInt64, atLeast: Int) -> Bool {
        let expected = (lines + 1...lines + UInt64(atLeast) + 2).map { "count \($0 * every)\n" }
        let sequence = expected.joined()
        let cutLines = output.split(separator: "\n", omittingEmptySubsequences: false)
        guard cutLines.count > atLeast else { return false }
        let checked = cutLines.prefix(atLeast).joined(separator: "\n") + "\n"
        for skip in 0...expected[0].count where sequence.dropFirst(skip).hasPrefix(checked) {
            return true
        }
        return false
    }

    /// True when `text` (whole lines only are looked at) is the `count` firmware's
    /// start line followed by exactly `count every`, `count 2*every`, … with
    /// nothing missing, repeated or garbled, and at least `atLeast` such lines.
    static func isExactSequence(_ text: String, every: UInt64, atLeast: Int) -> Bool {
        guard let end = text.lastIndex(of: "\n"), let firstEnd = text.firstIndex(of: "\n"),
              text.hasPrefix("count: start") else { return false }
        let body = text[text.index(after: firstEnd)...end]
        let n = body.filter { $0 == "\n" }.count
        guard n >= atLeast else { return false }
        return body == (1...UInt64(n)).map { "count \($0 * every)\n" }.joined()
    }

    struct ChildRun {
        var status: Int32
        var stdout: String
        var stderr: String
        /// Process start → first byte on stdout.
        var firstOutput: Double?
    }

    /// Runs skiff; stops it with SIGTERM once stdout holds `untilLines` lines or after `timeout`.
    /// - Parameter whileRunning: called with the child's pid once `untilLines` lines arrived, before it is stopped.
    static func runSkiff(_ arguments: [String], untilLines: Int = 0, timeout: Double = 30,
                         whileRunning: (Int32) -> Void = { _ in }) throws -> ChildRun {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        let collected = Lock<(out: Data, err: Data, first: Double?)>((Data(), Data(), nil))
        let started = Date()
        out.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            collected.withLock { c in
                if c.first == nil, !d.isEmpty { c.first = Date().timeIntervalSince(started) }
                c.out.append(d)
            }
        }
        err.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            collected.withLock { $0.err.append(d) }
        }
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline {
            if untilLines > 0, collected.withLock({ $0.out.filter { $0 == 0x0A }.count }) >= untilLines {
                whileRunning(process.processIdentifier)
                break
            }
            usleep(1_000)
        }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
        let restOut = out.fileHandleForReading.readDataToEndOfFile()
        let restErr = err.fileHandleForReading.readDataToEndOfFile()
        return collected.withLock { c in
            ChildRun(status: process.terminationStatus, stdout: String(decoding: c.out + restOut, as: UTF8.self),
                     stderr: String(decoding: c.err + restErr, as: UTF8.self), firstOutput: c.first)
        }
    }
}
