import Foundation
import Testing
@testable import VMM

/// A restore maps the memory file lazily: with most of a 256 MiB or 1 GiB
/// guest's RAM full of data, the restored process reaches guest output without
/// reading it (its resident memory stays far below the data), and restore →
/// vCPUs running takes about as long for both sizes. SKIFF_KEEP_SNAPSHOTS=1
/// keeps the snapshots in /tmp, to time `skiff run --restore` by hand.
@Suite(.enabled(if: FileManager.default.isWritableFile(atPath: "/dev/kvm"), "needs read/write access to /dev/kvm"),
       .serialized)
struct SnapshotRestoreTimingTests {
    /// Above the count firmware's scratch area (which ends at 28 MiB).
    static let fillStart: UInt64 = 32 << 20

    /// VmRSS of a process, in bytes.
    static func residentBytes(_ pid: Int32) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return line.split(separator: " ").dropFirst().first.flatMap { UInt64($0) }.map { $0 * 1024 }
        }
        return nil
    }

    @Test(arguments: [256, 1024])
    func restoreDoesNotReadGuestRAM(mebibytes: UInt64) throws {
        let size = mebibytes << 20
        let (machine, output, finish) = try SnapshotRestoreTests.bootCount(cpus: 1, every: 2_000_000, memory: size)
        #expect(output.waitForLines(2))
        try machine.pause()
        let filled = size - Self.fillStart - (16 << 20)
        let buffer = try machine.memory.buffer(at: .init(Self.fillStart), length: filled)
        buffer.initializeMemory(as: UInt8.self, repeating: 0x5A)
        let dir = SnapshotSupport.temporaryDirectory("timing")
        defer { if ProcessInfo.processInfo.environment["SKIFF_KEEP_SNAPSHOTS"] == nil { try? FileManager.default.removeItem(at: dir) } }
        let timing = try machine.snapshot(to: dir.path)
        try machine.requestShutdown()
        _ = finish()
        #expect(timing.memoryBytesWritten >= filled)

        var rss: UInt64?
        let run = try SnapshotSupport.runSkiff(["run", "--restore", dir.path, "--log-level", "info"], untilLines: 2) {
            rss = Self.residentBytes($0)
        }
        #expect(run.stdout.contains("count "), "stderr: \(run.stderr)")
        let resident = try #require(rss)
        #expect(resident < filled / 2, "the restored process has \(resident >> 20) MiB resident; \(filled >> 20) MiB of RAM hold data")
        let started = run.stderr.split(separator: "\n").first { $0.contains("restore → vCPU threads started") } ?? "?"
        print("restore, \(mebibytes) MiB guest (\(filled >> 20) MiB of data; snapshot wrote it in \(timing.memory)): "
            + "\(started.split(separator: "]").last ?? ""); process start → first guest output "
            + "\(run.firstOutput.map { String(format: "%.1f ms", $0 * 1000) } ?? "none"); resident \(resident >> 20) MiB")
    }
}
