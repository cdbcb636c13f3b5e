import Foundation
import Testing

/// Snapshots of a VM with a qcow2 disk (an overlay over a base image), taken
/// while the `blk` guest writes (`blk.mode=log`: one sector at a time, each
/// checked to be zeros before it is written, `blk: log N` once acknowledged,
/// everything read back at the end). See docs/snapshot.md, "Disks".
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: Shell.has("curl") && Shell.has("qemu-img") && Shell.has("qemu-io"), "needs curl, qemu-img and qemu-io"),
       .serialized)
struct SnapshotDiskTests {
    static let writes = 3000

    /// A base image, an overlay on it, and a snapshot of the `blk` log guest
    /// taken (paused first, so what it printed before is known) after `after`
    /// acknowledged writes. The original is resumed and runs to its end.
    struct Taken {
        let dir: URL
        let snapshot: String
        let base: String
        let top: String
        /// What the original printed up to the snapshot.
        let before: String
        /// What it printed in all (it finished its writes after the snapshot).
        let original: String
    }

    static func take(_ name: String, after: Int = 300) throws -> Taken {
        let dir = try Shell.temporaryDirectory(name)
        let base = dir.appendingPathComponent("base.qcow2").path
        let top = dir.appendingPathComponent("top.qcow2").path
        try Shell.run("qemu-img create -q -f qcow2 \(base) 64M && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 \(top)")
        let socket = dir.appendingPathComponent("vm.sock").path
        let snapshot = dir.appendingPathComponent("snap").path
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("blk"), "--memory", "64M",
                                   "--cmdline", "blk.mode=log blk.count=\(writes) blk.timeout=120000", "--disk", "path=\(top)",
                                   "--api-socket", socket])
        try #require(APILifecycleTests.waitForSocket(socket, vm: vm), "no API: \(vm.errors.text)")
        try #require(vm.output.waitFor("blk: log \(after)\n", timeout: 60), "\(vm.output.text.suffix(300))")
        #expect(try SkiffProcess.run(["pause", "--api-socket", socket], timeout: 30).status == 0)
        let before = vm.output.text
        let taken = try SkiffProcess.run(["snapshot", "--api-socket", socket, snapshot], timeout: 120)
        try #require(taken.status == 0, "skiff snapshot: \(taken.stderr)")
        #expect(try SkiffProcess.run(["resume", "--api-socket", socket], timeout: 30).status == 0)
        #expect(vm.waitForExit(timeout: 120) == 0, "\(vm.errors.text)")
        #expect(vm.output.text.contains("blk: PASS all 2 checks"), "original: \(vm.output.text.suffix(300))")
        return Taken(dir: dir, snapshot: snapshot, base: base, top: top, before: before, original: vm.output.text)
    }

    /// The `blk: log N` values in `text`, whole lines only.
    static func logged(_ text: String) -> [Int] {
        text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            .compactMap { $0.hasPrefix("blk: log ") ? Int($0.dropFirst(9)) : nil }
    }

    static func sha256(_ path: String) throws -> String {
        try Shell.run("sha256sum \(path)").split(separator: " ").first.map(String.init) ?? ""
    }

    @Test func writesBeforeTheSnapshotAreKeptAndTwoRestoresRunSideBySide() throws {
        let t = try Self.take("snapdisk")
        defer { try? FileManager.default.removeItem(at: t.dir) }
        let frozen = t.snapshot + "/disk0.qcow2"
        // The frozen top layer: a clean image whose backing name resolves from anywhere.
        #expect(try Shell.run("qemu-img check \(frozen)").contains("No errors were found"))
        let chain = try Shell.run("qemu-img info --backing-chain \(frozen)")
        #expect(chain.contains("backing file: \(t.base)"), "\(chain)")
        let frozenHash = try Self.sha256(frozen)

        // Both at once, each on its own overlay; the original has written all of
        // its sectors by now, and each restored guest checks it finds them zero.
        let overlays = (1...2).map { t.dir.appendingPathComponent("clone\($0).qcow2").path }
        // Sound because: `runs` is written with `lock` held and read after `concurrentPerform` returns.
        final class Runs: @unchecked Sendable {
            let lock = NSLock()
            var runs: [SkiffRun?] = [nil, nil]
        }
        let results = Runs()
        let snapshot = t.snapshot
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let run = try? SkiffProcess.run(["run", "--restore", snapshot, "--disk", "path=\(overlays[i])"], timeout: 180)
            results.lock.withLock { results.runs[i] = run }
        }
        for (i, run) in results.runs.enumerated() {
            let run = try #require(run)
            #expect(run.status == 0, "restore \(i): \(run.stderr)")
            #expect(run.stdout.contains("blk: PASS log: \(Self.writes) sectors read back with the pattern"),
                    "restore \(i): \(run.stdout.suffix(400))")
            #expect(run.stdout.contains("blk: PASS all 2 checks"), "restore \(i): \(run.stdout.suffix(400))")
            // Acknowledged before the snapshot, then after the restore: every write once, in order.
            let all = Self.logged(t.before + run.stdout)
            #expect(all == Array(0..<Self.writes), "restore \(i): \(all.prefix(5))… \(all.count) writes logged")
            #expect(try Shell.run("qemu-img check \(overlays[i])").contains("No errors were found"))
            let info = try Shell.run("qemu-img info \(overlays[i])")
            #expect(info.contains("backing file: \(frozen)"), "\(info)")
        }
        #expect(Self.logged(t.before).count >= 300)
        #expect(try Self.sha256(frozen) == frozenHash, "a restore wrote into the snapshot")
        #expect(try Shell.run("qemu-img check \(t.top)").contains("No errors were found"))
    }

    /// A restored VM's disk is its overlay on the first snapshot's copy; a
    /// snapshot of it freezes that overlay and references the copy under it.
    @Test func aRestoredVMIsSnapshottedAndRestoredAgain() throws {
        let t = try Self.take("snapdisk-gen2", after: 100)
        defer { try? FileManager.default.removeItem(at: t.dir) }
        let socket = t.dir.appendingPathComponent("gen1.sock").path
        let second = t.dir.appendingPathComponent("snap2").path
        let vm = try BackgroundVM(["run", "--restore", t.snapshot, "--disk", "path=\(t.dir.path)/gen1.qcow2",
                                   "--api-socket", socket])
        try #require(APILifecycleTests.waitForSocket(socket, vm: vm), "no API: \(vm.errors.text)")
        try #require(vm.output.waitFor("blk: log 600\n", timeout: 60), "\(vm.output.text.suffix(300)) \(vm.errors.text)")
        #expect(try SkiffProcess.run(["pause", "--api-socket", socket], timeout: 30).status == 0)
        let middle = vm.output.text
        let taken = try SkiffProcess.run(["snapshot", "--api-socket", socket, second], timeout: 120)
        try #require(taken.status == 0, "skiff snapshot: \(taken.stderr)")
        kill(vm.process.processIdentifier, SIGKILL)
        _ = vm.waitForExit(timeout: 30)

        let chain = try Shell.run("qemu-img info --backing-chain \(second)/disk0.qcow2")
        #expect(chain.contains("backing file: \(t.snapshot)/disk0.qcow2") && chain.contains("backing file: \(t.base)"),
                "\(chain)")
        let run = try SkiffProcess.run(["run", "--restore", second, "--disk", "path=\(t.dir.path)/gen2.qcow2"], timeout: 180)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("blk: PASS all 2 checks"), "\(run.stdout.suffix(400))")
        let all = Self.logged(t.before + middle + run.stdout)
        #expect(all == Array(0..<Self.writes), "\(all.prefix(5))… \(all.count) writes logged")
        #expect(try Shell.run("qemu-img check \(t.dir.path)/gen2.qcow2").contains("No errors were found"))
    }

    /// Snapshots of the *running* guest (no pause first: the snapshot pauses it
    /// with writes in flight), at SKIFF_SNAPSHOT_DISK_ROUNDS points (default 2):
    /// each restore carries on from its point, every write once, all read back.
    @Test func snapshotsOfTheRunningGuestMidWriteRestoreConsistently() throws {
        let rounds = Int(ProcessInfo.processInfo.environment["SKIFF_SNAPSHOT_DISK_ROUNDS"] ?? "") ?? 2
        let dir = try Shell.temporaryDirectory("snapdisk-running")
        defer { try? FileManager.default.removeItem(at: dir) }
        let top = dir.appendingPathComponent("top.qcow2").path
        try Shell.run("qemu-img create -q -f qcow2 \(dir.path)/base.qcow2 64M && "
            + "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 \(top)")
        let socket = dir.appendingPathComponent("vm.sock").path
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("blk"), "--memory", "64M",
                                   "--cmdline", "blk.mode=log blk.count=\(Self.writes) blk.timeout=120000", "--disk", "path=\(top)",
                                   "--api-socket", socket])
        try #require(APILifecycleTests.waitForSocket(socket, vm: vm), "no API: \(vm.errors.text)")
        var points: [Int] = []
        for round in 0..<rounds {
            // All in the first half, so the guest does not finish (and power off) during the last one.
            let point = 100 + round * (Self.writes / 2) / max(1, rounds)
            guard vm.output.waitFor("blk: log \(point)\n", timeout: 60) else { break }
            let taken = try SkiffProcess.run(["snapshot", "--api-socket", socket, "\(dir.path)/snap\(round)"], timeout: 120)
            try #require(taken.status == 0, "skiff snapshot \(round): \(taken.stderr)")
            points.append(point)
        }
        #expect(vm.waitForExit(timeout: 120) == 0, "\(vm.errors.text)")
        #expect(points.count == rounds, "the guest finished before all snapshots: \(vm.output.text.suffix(200))")
        for (round, point) in points.enumerated() {
            let run = try SkiffProcess.run(["run", "--restore", "\(dir.path)/snap\(round)",
                                            "--disk", "path=\(dir.path)/clone\(round).qcow2"], timeout: 180)
            #expect(run.status == 0, "restore \(round): \(run.stderr)")
            #expect(run.stdout.contains("blk: PASS all 2 checks"), "restore \(round): \(run.stdout.suffix(400))")
            // The first line may be the end of one cut by the snapshot; whole lines follow on.
            let got = Self.logged(run.stdout)
            let first = got.first ?? -1
            #expect(first > point && got == Array(first..<Self.writes),
                    "restore \(round) (snapshot after write \(point)): \(got.prefix(5))… \(got.count) writes logged")
        }
    }

    @Test func brokenDiskPartsAreOneClearErrorAndStartNothing() throws {
        let t = try Self.take("snapdisk-bad", after: 10)
        defer { try? FileManager.default.removeItem(at: t.dir) }
        let frozen = t.snapshot + "/disk0.qcow2"

        func refused(_ extra: [String] = [], _ expected: String, _ what: String) throws {
            let before = try FileManager.default.contentsOfDirectory(atPath: t.dir.path).sorted()
            let run = try SkiffProcess.run(["run", "--restore", t.snapshot] + extra, timeout: 60)
            #expect(run.status == 1 || run.status == 2, "\(what): status \(run.status)")
            let lines = run.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].hasPrefix("skiff: error:") && run.stderr.contains(expected),
                    "\(what): \(run.stderr)")
            #expect(run.stdout.isEmpty, "\(what): the guest ran: \(run.stdout.prefix(200))")
            #expect(try FileManager.default.contentsOfDirectory(atPath: t.dir.path).sorted() == before,
                    "\(what): a file was left behind")
        }

        try refused(["--disk", "path=\(t.dir.path)/a.qcow2", "--disk", "path=\(t.dir.path)/b.qcow2"],
                    "2 --disk given, the snapshot has 1 disk", "too many --disk")
        try refused(["--disk", "path=\(t.top)"], "exists", "an overlay that exists")
        try refused(["--disk", "path=\(t.dir.path)/x.qcow2,serial=X"], "only path=", "--disk with more than a path")

        // A wrong device count: the manifest loses its disk, the state still has it.
        let manifest = t.snapshot + "/manifest.json"
        let saved = try Data(contentsOf: URL(fileURLWithPath: manifest))
        var json = try #require(try JSONSerialization.jsonObject(with: saved) as? [String: Any])
        var machine = try #require(json["machine"] as? [String: Any])
        machine["devices"] = (machine["devices"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String != "virtio-block" }
        json["machine"] = machine
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: manifest))
        try refused([], "virtio device", "manifest without the disk")
        try saved.write(to: URL(fileURLWithPath: manifest))

        try FileManager.default.moveItem(atPath: frozen, toPath: frozen + ".away")
        try refused([], "is missing", "frozen disk missing")
        try FileManager.default.moveItem(atPath: frozen + ".away", toPath: frozen)

        try Shell.run("qemu-io -c 'write -P 0x11 0 64k' \(t.base) >/dev/null")  // the base changes under the snapshot
        try refused([], "changed since the snapshot", "changed base")
    }
}
