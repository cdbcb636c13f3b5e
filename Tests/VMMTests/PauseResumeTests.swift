import Foundation
import Posix
import Testing
@testable import VMM

/// A `count` firmware guest in this process, paused and resumed through the
/// Machine's lifecycle: its `count N` lines must continue with no gap and no
/// repeat, and none may appear while it is paused.
@Suite(.enabled(if: FileManager.default.isWritableFile(atPath: "/dev/kvm"), "needs read/write access to /dev/kvm"),
       .serialized)
struct PauseResumeTests {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// firmware/out/count.elf, built by the project's script if missing.
    static func countFirmware() throws -> String {
        let path = repoRoot.appendingPathComponent("firmware/out/count.elf").path
        if !FileManager.default.fileExists(atPath: path) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = [repoRoot.appendingPathComponent("scripts/build-firmware.sh").path, "count"]
            try p.run()
            p.waitUntilExit()
        }
        return path
    }

    /// The guest's serial output, line by line.
    final class Console: Sendable {
        private let text = Lock<[UInt8]>([])
        func append(_ byte: UInt8) { text.withLock { $0.append(byte) } }
        var counts: [UInt64] {
            let s = text.withLock { String(decoding: $0, as: UTF8.self) }
            // Whole lines only: the last one may still be arriving.
            let complete = s.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            return complete.compactMap { line in
                line.hasPrefix("count ") ? UInt64(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) : nil
            }
        }
    }

    /// Boots `count` on its own thread; returns the machine, its console, and a
    /// wait for its exit.
    static func boot(cpus: Int, every: UInt64) throws -> (Machine, Console, () -> MachineExit) {
        let console = Console()
        let config = MachineConfig(kernelPath: try countFirmware(), commandLine: "count.every=\(every)",
                                   cpuCount: cpus, memorySize: 64 << 20)
        let machine = try Machine(config: config, output: { console.append($0) })
        let result = Lock<MachineExit?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread {
            let exit = machine.run(attachConsole: false)
            result.withLock { $0 = exit }
            done.signal()
        }.start()
        return (machine, console, { done.wait(); return result.withLock { $0! } })
    }

    static func waitForLines(_ console: Console, atLeast n: Int, seconds: Double = 60) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if console.counts.count >= n { return true }
            usleep(2_000)
        }
        return false
    }

    @Test(arguments: [1, 2, 8])
    func pauseAndResumeKeepTheSequence(cpus: Int) throws {
        let every: UInt64 = 2_000_000
        let (machine, console, finish) = try Self.boot(cpus: cpus, every: every)
        #expect(Self.waitForLines(console, atLeast: 3), "count did not start")
        var parked: [Duration] = []
        for round in 0..<200 {
            let timing = try machine.pause()
            parked.append(timing.vcpusParked)
            #expect(machine.runState == .paused)
            let before = console.counts.count
            if round % 50 == 0 {
                usleep(2_000_000)  // nothing may move while paused, however long
                #expect(console.counts.count == before, "a line appeared while paused")
            }
            #expect(throws: LifecycleError.self) { try machine.pause() }
            try machine.resume()
            #expect(machine.runState == .running)
            #expect(throws: LifecycleError.self) { try machine.resume() }
        }
        let seen = console.counts.count
        #expect(Self.waitForLines(console, atLeast: seen + 3), "count did not go on after the last resume")
        try machine.requestShutdown()
        #expect(finish() == .shutDownByRequest)
        let counts = console.counts
        let expected = (1...counts.count).map { UInt64($0) * every }
        #expect(counts == expected, "the sequence has a gap or a repeat")
        let sorted = parked.sorted()
        print("pause latency, \(cpus) vCPU(s), request → all vCPUs parked: median \(sorted[sorted.count / 2]), max \(sorted.last!)")
    }

    @Test func aPausedVMShutsDown() throws {
        let (machine, console, finish) = try Self.boot(cpus: 1, every: 2_000_000)
        #expect(Self.waitForLines(console, atLeast: 1))
        try machine.pause()
        try machine.requestShutdown()
        #expect(finish() == .shutDownByRequest)
        #expect(machine.runState == .stopped)
        #expect(throws: LifecycleError.self) { try machine.resume() }
        #expect(throws: LifecycleError.self) { try machine.pause() }
    }
}
