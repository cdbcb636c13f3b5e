import Foundation
import Posix
import Testing
@testable import VMM
import Virtio
import VMState

/// Snapshots of a running `count` guest, restored in a new `skiff` process and
/// in this one: the restored guest's lines must continue the sequence exactly
/// from where the snapshot caught it.
@Suite(.enabled(if: FileManager.default.isWritableFile(atPath: "/dev/kvm"), "needs read/write access to /dev/kvm"),
       .serialized)
struct SnapshotRestoreTests {
    /// The guest's serial output as text.
    final class Output: Sendable {
        private let bytes = Lock<[UInt8]>([])
        func append(_ byte: UInt8) { bytes.withLock { $0.append(byte) } }
        var text: String { bytes.withLock { String(decoding: $0, as: UTF8.self) } }
        var newlines: Int { bytes.withLock { $0.filter { $0 == 0x0A }.count } }
        func waitForLines(_ n: Int, seconds: Double = 60) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if newlines >= n { return true }
                usleep(2_000)
            }
            return false
        }
    }

    /// Runs `machine` on its own thread; returns a wait for its exit.
    static func start(_ machine: Machine, startPaused: Bool = false) -> () -> MachineExit {
        let result = Lock<MachineExit?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread {
            let exit = machine.run(attachConsole: false, startPaused: startPaused)
            result.withLock { $0 = exit }
            done.signal()
        }.start()
        return { done.wait(); return result.withLock { $0! } }
    }

    static func bootCount(cpus: Int, every: UInt64, memory: UInt64 = 64 << 20) throws -> (Machine, Output, () -> MachineExit) {
        let output = Output()
        let config = MachineConfig(kernelPath: try PauseResumeTests.countFirmware(), commandLine: "count.every=\(every)",
                                   cpuCount: cpus, memorySize: memory)
        let machine = try Machine(config: config, output: { output.append($0) })
        return (machine, output, start(machine))
    }

    @Test(arguments: [1, 2])
    func aSnapshotOfARunningGuestContinuesInANewProcess(cpus: Int) throws {
        let every: UInt64 = 2_000_000
        let (machine, output, finish) = try Self.bootCount(cpus: cpus, every: every)
        // Start line + 4 counts: the guest bumps its line counter only after the
        // newline, so the 3rd line's newline alone does not make lines == 3 yet.
        #expect(output.waitForLines(5), "count did not start")
        let dir = SnapshotSupport.temporaryDirectory("snap")
        defer { try? FileManager.default.removeItem(at: dir) }
        let timing = try machine.snapshot(to: dir.path)
        #expect(machine.runState == .running, "a running VM must run on after its snapshot")
        let linesAtSnapshot = try SnapshotSupport.guestWord(SnapshotSupport.linesAddress, inSnapshot: dir)
        #expect(linesAtSnapshot >= 3)
        // The original goes on: the snapshot must not have disturbed it.
        let seen = output.newlines
        #expect(output.waitForLines(seen + 3), "the original stopped after the snapshot")
        try machine.requestShutdown()
        #expect(finish() == .shutDownByRequest)
        #expect(SnapshotSupport.continues(output.text.split(separator: "\n", maxSplits: 1).last.map(String.init) ?? "",
                                          afterLine: 0, every: every, atLeast: 5))

        let run = try SnapshotSupport.runSkiff(["run", "--restore", dir.path], untilLines: 6)
        #expect(run.stderr.isEmpty, "stderr: \(run.stderr)")
        #expect(SnapshotSupport.continues(run.stdout, afterLine: linesAtSnapshot, every: every, atLeast: 5),
                "after line \(linesAtSnapshot) the restore printed: \(run.stdout.prefix(300))")
        print("snapshot, \(cpus) vCPU(s), 64 MiB: pause \(timing.pause), memory \(timing.memory) "
            + "(\(timing.memoryBytesWritten >> 10) KiB), state \(timing.state), total \(timing.total); "
            + "restore process start → first output \(run.firstOutput.map { String(format: "%.1f ms", $0 * 1000) } ?? "none")")
    }

    /// Snapshot → restore in this process → snapshot that (RAM now a private
    /// file mapping) → restore again: still continuous, and a paused VM stays paused.
    @Test func aRestoredGuestSnapshotsAgain() throws {
        let every: UInt64 = 2_000_000
        let (machine, output, finish) = try Self.bootCount(cpus: 2, every: every)
        #expect(output.waitForLines(3))
        try machine.pause()
        let first = SnapshotSupport.temporaryDirectory("snap1"), second = SnapshotSupport.temporaryDirectory("snap2")
        defer {
            try? FileManager.default.removeItem(at: first)
            try? FileManager.default.removeItem(at: second)
        }
        try machine.snapshot(to: first.path)
        #expect(machine.runState == .paused, "a paused VM must stay paused")
        try machine.requestShutdown()
        _ = finish()
        let lines1 = try SnapshotSupport.guestWord(SnapshotSupport.linesAddress, inSnapshot: first)

        let restoredOutput = Output()
        let restored = try Machine(restoringFrom: first.path, output: { restoredOutput.append($0) })
        #expect(restored.memory.backing == .privateFile)
        let finishRestored = Self.start(restored, startPaused: true)
        usleep(300_000)
        #expect(restoredOutput.newlines == 0, "a VM restored paused printed")
        #expect(restored.runState == .paused)
        try restored.resume()
        #expect(restoredOutput.waitForLines(4))
        try restored.snapshot(to: second.path)
        try restored.requestShutdown()
        _ = finishRestored()
        #expect(SnapshotSupport.continues(restoredOutput.text, afterLine: lines1, every: every, atLeast: 4),
                "after line \(lines1): \(restoredOutput.text.prefix(300))")

        let lines2 = try SnapshotSupport.guestWord(SnapshotSupport.linesAddress, inSnapshot: second)
        #expect(lines2 > lines1)
        let againOutput = Output()
        let again = try Machine(restoringFrom: second.path, output: { againOutput.append($0) })
        let finishAgain = Self.start(again)
        #expect(againOutput.waitForLines(5))
        try again.requestShutdown()
        _ = finishAgain()
        #expect(SnapshotSupport.continues(againOutput.text, afterLine: lines2, every: every, atLeast: 4),
                "after line \(lines2): \(againOutput.text.prefix(300))")
    }

    /// The memory file is sparse: its blocks are about what the guest touched
    /// (the memfd's own blocks), not the 1 GiB of RAM.
    @Test func theMemoryFileHoldsOnlyTouchedRAM() throws {
        let (machine, output, finish) = try Self.bootCount(cpus: 1, every: 2_000_000, memory: 1 << 30)
        #expect(output.waitForLines(2))
        let dir = SnapshotSupport.temporaryDirectory("sparse")
        defer { try? FileManager.default.removeItem(at: dir) }
        try machine.pause()
        var ram = stat()
        #expect(fstat(machine.memory.fileDescriptor, &ram) == 0)
        let timing = try machine.snapshot(to: dir.path)
        try machine.requestShutdown()
        _ = finish()
        var file = stat()
        #expect(stat(dir.appendingPathComponent("memory").path, &file) == 0)
        let touched = UInt64(ram.st_blocks) * 512, used = UInt64(file.st_blocks) * 512
        #expect(UInt64(file.st_size) == 1 << 30)
        #expect(used <= touched + (1 << 20), "memory file uses \(used) bytes, the guest touched \(touched)")
        #expect(used < 64 << 20)
        print("snapshot, 1 GiB guest: memory file \(used >> 10) KiB on disk (guest touched \(touched >> 10) KiB), "
            + "memory written in \(timing.memory), total \(timing.total)")

        let run = try SnapshotSupport.runSkiff(["run", "--restore", dir.path], untilLines: 2)
        #expect(run.stdout.contains("count "), "stderr: \(run.stderr)")
        print("restore, 1 GiB guest: process start → first output \(run.firstOutput.map { String(format: "%.1f ms", $0 * 1000) } ?? "none")")
    }

    @Test func aStoppedVMIsNotSnapshotted() throws {
        let (machine, output, finish) = try Self.bootCount(cpus: 1, every: 2_000_000)
        #expect(output.waitForLines(1))
        try machine.requestShutdown()
        _ = finish()
        let dir = SnapshotSupport.temporaryDirectory("stopped")
        #expect(throws: LifecycleError.self) { try machine.snapshot(to: dir.path) }
        #expect(!FileManager.default.fileExists(atPath: dir.path), "a refused snapshot must write nothing")
    }

    /// A snapshot that cannot be written fails with an error, and the VM it
    /// paused for it runs on.
    @Test func aFailedSnapshotLeavesTheGuestRunning() throws {
        let (machine, output, finish) = try Self.bootCount(cpus: 1, every: 2_000_000)
        #expect(output.waitForLines(2))
        let nowhere = SnapshotSupport.temporaryDirectory("missing-parent").appendingPathComponent("snap")
        #expect(throws: SnapshotError.self) { try machine.snapshot(to: nowhere.path) }
        #expect(machine.runState == .running)
        let seen = output.newlines
        #expect(output.waitForLines(seen + 2), "the guest stayed paused after a failed snapshot")
        try machine.requestShutdown()
        #expect(finish() == .shutDownByRequest)
    }

    /// A raw disk is copied whole into the snapshot, holes kept as holes, and
    /// the VM runs on; the manifest says where the copy is.
    @Test func aRawDiskIsCopiedSparselyAndTheVMRunsOn() throws {
        let image = SnapshotSupport.temporaryDirectory("disk.raw")
        defer { try? FileManager.default.removeItem(at: image) }
        let handle = try #require(FileManager.default.createFile(atPath: image.path, contents: nil) ? FileHandle(forWritingAtPath: image.path) : nil)
        try handle.truncate(atOffset: 16 << 20)
        try handle.seek(toOffset: 5 << 20)
        handle.write(Data(repeating: 0xA5, count: 8192))
        try handle.close()
        let output = Output()
        let config = MachineConfig(kernelPath: try PauseResumeTests.countFirmware(), commandLine: "count.every=2000000",
                                   memorySize: 64 << 20, disks: [BlockDeviceConfig(path: image.path)])
        let machine = try Machine(config: config, output: { output.append($0) })
        let finish = Self.start(machine)
        #expect(output.waitForLines(2))
        let dir = SnapshotSupport.temporaryDirectory("withdisk")
        defer { try? FileManager.default.removeItem(at: dir) }
        let timing = try machine.snapshot(to: dir.path)
        #expect(machine.runState == .running)
        let copy = dir.appendingPathComponent("disk0.raw")
        #expect(try Data(contentsOf: copy) == Data(contentsOf: image))
        var st = stat()
        #expect(stat(copy.path, &st) == 0 && st.st_blocks * 512 < 1 << 20, "the copy is not sparse: \(st.st_blocks) blocks")
        #expect(timing.diskBytesCopied < 1 << 20, "copied \(timing.diskBytesCopied) bytes of a 16 MiB file with 8 KiB of data")
        let manifest = try JSONDecoder().decode(SnapshotManifest.self, from: Data(contentsOf: dir.appendingPathComponent("manifest.json")))
        let disk = manifest.machine.devices.first { $0.kind == "virtio-block" }
        #expect(disk?.frozenFile == "disk0.raw" && disk?.frozenSize == 16 << 20 && disk?.format == "raw", "\(String(describing: disk))")
        let seen = output.newlines
        #expect(output.waitForLines(seen + 2), "the guest stopped")
        try machine.requestShutdown()
        #expect(finish() == .shutDownByRequest)
    }

    /// Many snapshots of a guest that prints all the time, so some catch a vCPU
    /// right after a serial-port exit: the original's output up to each
    /// snapshot followed by the restored guest's output must be the exact
    /// sequence — no character replayed (the I/O instruction is completed
    /// before the save) or lost.
    @Test func snapshotsTakenMidPrintDoNotReplayIO() throws {
        let every: UInt64 = 20_000
        let (machine, output, finish) = try Self.bootCount(cpus: 1, every: every)
        #expect(output.waitForLines(3))
        var taken: [(dir: URL, before: String)] = []
        defer { for t in taken { try? FileManager.default.removeItem(at: t.dir) } }
        for i in 0..<12 {
            let dir = SnapshotSupport.temporaryDirectory("midprint\(i)")
            try machine.pause()
            taken.append((dir, output.text))  // all the original printed: its vCPU is parked
            try machine.snapshot(to: dir.path)
            try machine.resume()
            usleep(3_000)
        }
        try machine.requestShutdown()
        _ = finish()
        for (dir, before) in taken {
            let restoredOutput = Output()
            let restored = try Machine(restoringFrom: dir.path, output: { restoredOutput.append($0) })
            let done = Self.start(restored)
            #expect(restoredOutput.waitForLines(4))
            try restored.requestShutdown()
            _ = done()
            #expect(SnapshotSupport.isExactSequence(before + restoredOutput.text, every: every, atLeast: 5),
                    "…\(before.suffix(40).debugDescription) + \(restoredOutput.text.prefix(60).debugDescription)")
        }
    }
}
