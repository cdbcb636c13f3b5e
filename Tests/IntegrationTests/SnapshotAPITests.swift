import Foundation
import Testing

/// `skiff snapshot` through the API of a running `count` guest, then `skiff run
/// --restore` in a new process: what the original printed up to the snapshot,
/// followed by what the restored VM prints, is one unbroken count sequence.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: Shell.has("curl"), "needs curl"),
       .serialized)
struct SnapshotAPITests {
    @Test func snapshotThroughTheAPIRestoresInANewProcess() throws {
        let dir = try Shell.temporaryDirectory("api-snapshot")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let snapshot = dir.appendingPathComponent("snap").path
        let every: UInt64 = 2_000_000
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("count"), "--memory", "128M",
                                   "--cmdline", "count.every=\(every)", "--api-socket", socket])
        try #require(APILifecycleTests.waitForSocket(socket, vm: vm), "no API: \(vm.errors.text)")
        #expect(vm.waitForCounts(3, timeout: 60))
        // Paused first, so what it printed up to the snapshot is known exactly.
        #expect(try SkiffProcess.run(["pause", "--api-socket", socket], timeout: 30).status == 0)
        let before = vm.output.text
        let taken = try SkiffProcess.run(["snapshot", "--api-socket", socket, snapshot], timeout: 120)
        #expect(taken.status == 0, "skiff snapshot: \(taken.stderr)")
        #expect(try APILifecycleTests.state(socket) == "Paused", "a paused VM stays paused")
        #expect(vm.output.text == before)
        #expect(try SkiffProcess.run(["shutdown", "--api-socket", socket], timeout: 30).status == 0)
        #expect(vm.waitForExit(timeout: 30) == 0)

        // `count` prints fast: stop 12 lines past where the original was paused, not at a fixed value it may have passed.
        let paused = before.split(separator: "\n").compactMap { $0.hasPrefix("count ") ? UInt64($0.dropFirst(6)) : nil }.last ?? 0
        let restored = try SkiffProcess.run(["run", "--restore", snapshot], timeout: 120,
                                            stopWhen: "count \(paused + every * 12)\n")
        let joined = before + restored.stdout
        let lines = joined.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        let counts = lines.compactMap { $0.hasPrefix("count ") ? UInt64($0.dropFirst(6)) : nil }
        #expect(counts.count >= 12, "restored output: \(restored.stdout.prefix(400)) stderr: \(restored.stderr)")
        #expect(counts == (1...max(1, counts.count)).map { UInt64($0) * every },
                "not one unbroken sequence: \(counts.prefix(20)) — original then restored")
        #expect(restored.status == 128 + SIGTERM, "stderr: \(restored.stderr)")
    }
}

extension SnapshotAPITests {
    /// Progress: `vm.info` carries the snapshot's figures (phase, RAM scanned and
    /// written), and `skiff snapshot` on a terminal shows them on stderr.
    @Test func snapshotProgressIsInVMInfoAndOnATerminal() throws {
        let dir = try Shell.temporaryDirectory("api-snapshot-progress")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("count"), "--memory", "256M",
                                   "--cmdline", "count.every=2000000", "--api-socket", socket])
        try #require(APILifecycleTests.waitForSocket(socket, vm: vm), "no API: \(vm.errors.text)")
        #expect(vm.waitForCounts(2, timeout: 60))
        let before = try APILifecycleTests.http(socket, "GET", "vm.info")
        #expect(!before.body.contains("\"snapshot\""), "progress before any snapshot: \(before.body)")

        let terminal = try PseudoTerminal()
        let client = Process()
        client.executableURL = SkiffProcess.binary
        client.arguments = ["snapshot", "--api-socket", socket, dir.appendingPathComponent("snap").path]
        client.standardError = terminal.slaveHandle
        client.standardOutput = FileHandle.nullDevice
        try client.run()
        client.waitUntilExit()
        #expect(client.terminationStatus == 0)
        var bytes = [UInt8](repeating: 0, count: 4096)
        let flags = fcntl(terminal.master, F_GETFL)
        _ = fcntl(terminal.master, F_SETFL, flags | O_NONBLOCK)
        let n = read(terminal.master, &bytes, bytes.count)
        let shown = n > 0 ? String(decoding: bytes[0..<n], as: UTF8.self) : ""
        #expect(shown.contains("snapshot: done, memory 256/256 MiB scanned"), "terminal showed: \(shown.debugDescription)")

        let info = try APILifecycleTests.http(socket, "GET", "vm.info")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(info.body.utf8)) as? [String: Any])
        let progress = try #require(json["snapshot"] as? [String: Any], "vm.info: \(info.body)")
        #expect(progress["phase"] as? String == "done")
        #expect(progress["memory_bytes"] as? Int == 256 << 20)
        #expect(progress["memory_bytes_scanned"] as? Int == 256 << 20)
        let written = progress["memory_bytes_written"] as? Int ?? -1
        #expect(written > 0 && written < 8 << 20, "count touches little RAM; written \(written)")
        #expect(try SkiffProcess.run(["shutdown", "--api-socket", socket], timeout: 30).status == 0)
        #expect(vm.waitForExit(timeout: 30) == 0)
    }
}

/// `PUT vm.restore` on `skiff run --api-socket PATH` started without a kernel,
/// as Cloud Hypervisor does: a bad snapshot is that request's error and the VMM
/// keeps waiting; a good one is restored paused, on the overlay the command
/// line gave, and `vm.resume` runs it.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: Shell.has("curl") && Shell.has("qemu-img"), "needs curl and qemu-img"),
       .serialized)
struct RestoreAPITests {
    @Test func vmRestoreThroughTheAPI() throws {
        let t = try SnapshotDiskTests.take("api-restore")
        defer { try? FileManager.default.removeItem(at: t.dir) }
        let socket = t.dir.appendingPathComponent("restore.sock").path
        let overlay = t.dir.appendingPathComponent("restored.qcow2").path
        let vm = try BackgroundVM(["run", "--api-socket", socket, "--disk", "path=\(overlay)"])
        try #require(APILifecycleTests.waitForSocket(socket, vm: vm), "no API: \(vm.errors.text)")
        #expect(try APILifecycleTests.state(socket) == "Created")

        let bad = try APILifecycleTests.http(socket, "PUT", "vm.restore", body: #"{"source_url": "file://\#(t.dir.path)/nothing"}"#)
        #expect(bad.status == 400, "\(bad.body)")
        #expect(!FileManager.default.fileExists(atPath: overlay))

        let good = try APILifecycleTests.http(socket, "PUT", "vm.restore", body: #"{"source_url": "file://\#(t.snapshot)"}"#)
        #expect(good.status == 204, "\(good.body) \(vm.errors.text)")
        #expect(try APILifecycleTests.state(socket) == "Paused")
        let info = try APILifecycleTests.http(socket, "GET", "vm.info")
        #expect(info.body.contains(#""path":"\#(overlay)""#), "\(info.body)")
        let again = try APILifecycleTests.http(socket, "PUT", "vm.restore", body: #"{"source_url": "file://\#(t.snapshot)"}"#)
        #expect(again.status == 409, "\(again.body)")
        #expect(vm.output.text.isEmpty, "ran before vm.resume: \(vm.output.text.prefix(200))")

        #expect(try APILifecycleTests.http(socket, "PUT", "vm.resume").status == 204)
        #expect(vm.waitForExit(timeout: 180) == 0, "\(vm.errors.text)")
        let all = SnapshotDiskTests.logged(t.before + vm.output.text)
        #expect(all == Array(0..<SnapshotDiskTests.writes), "\(all.prefix(5))… \(all.count) writes logged")
        #expect(vm.output.text.contains("blk: PASS all 2 checks"), "\(vm.output.text.suffix(300))")
    }

    /// Waiting for vm.restore ends as a VM does: vmm.shutdown exits 0, SIGTERM 143; the socket goes.
    @Test func aWaitingVMMEndsOnRequestOrSignal() throws {
        let dir = try Shell.temporaryDirectory("restore-wait")
        defer { try? FileManager.default.removeItem(at: dir) }
        for ending in ["vmm.shutdown", "SIGTERM"] {
            let socket = dir.appendingPathComponent("\(ending).sock").path
            let vm = try BackgroundVM(["run", "--api-socket", socket])
            try #require(APILifecycleTests.waitForSocket(socket, vm: vm), "no API: \(vm.errors.text)")
            if ending == "SIGTERM" {
                kill(vm.process.processIdentifier, SIGTERM)
            } else {
                #expect(try APILifecycleTests.http(socket, "PUT", "vmm.shutdown").status == 204)
            }
            #expect(vm.waitForExit(timeout: 30) == (ending == "SIGTERM" ? 128 + SIGTERM : 0), "\(ending): \(vm.errors.text)")
            #expect(!FileManager.default.fileExists(atPath: socket), "\(ending): the socket stayed")
        }
    }

    @Test func withoutKernelOrSocketIsAUsageError() throws {
        let run = try SkiffProcess.run(["run"], timeout: 30)
        #expect(run.status == 2)
        #expect(run.stderr.hasPrefix("skiff: error:") && run.stderr.contains("--api-socket"), "\(run.stderr)")
    }
}
