import Foundation
import Testing

/// Live migration without shared storage (docs/migration.md, "Disks without
/// shared storage"): the `blk` log guest (one-sector writes, each checked to
/// be zeros first, `blk: log N` once acknowledged, all read back at the end)
/// on a qcow2 overlay over a base; the destination is given its own new
/// overlay (`--disk path=` with `--incoming`) on the same base, and the top
/// layer travels with the memory while the guest writes.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: Shell.has("qemu-img") && Shell.has("qemu-io"), "needs qemu-img and qemu-io"),
       .serialized)
struct MigrationDiskCopyTests {
    /// The most the firmware does: under load the migration's start can take
    /// seconds, and the guest must still be writing when it runs.
    static let writes = 8000
    /// Byte offset of the guest's log sector `n` (the log starts at sector 4096).
    static func logOffset(_ n: Int) -> Int { (4096 + n) * 512 }

    /// A base with data, and an overlay on it holding data of its own (which
    /// round 0 sends) and a zero cluster hiding the base's data.
    static func images(_ dir: URL, topData: String = "4M") throws -> (base: String, top: String) {
        let base = dir.appendingPathComponent("base.qcow2").path
        let top = dir.appendingPathComponent("top.qcow2").path
        try Shell.run("qemu-img create -q -f qcow2 \(base) 64M && qemu-io -c 'write -P 0x11 0 1M' \(base) >/dev/null && "
            + "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 \(top) && "
            + "qemu-io -c 'write -P 0x22 8M \(topData)' -c 'write -z 0 64k' \(top) >/dev/null")
        return (base, top)
    }

    /// Whether `qemu-io` finds the range of `image` filled with `pattern`.
    static func holds(_ image: String, _ pattern: Int, at offset: Int, _ length: Int) throws -> Bool {
        // qemu-io exits non-zero on a pattern mismatch: the output says which.
        let out = try Shell.run("qemu-io -r -c 'read -P \(pattern) \(offset) \(length)' \(image) 2>&1 || true")
        return out.contains("read \(length)/\(length) bytes") && !out.contains("Pattern verification failed")
    }

    static func source(_ top: String, socket: String, format: String? = nil) throws -> BackgroundVM {
        try BackgroundVM(["run", "--kernel", try Firmware.path("blk"), "--memory", "64M",
                          "--cmdline", "blk.mode=log blk.count=\(writes) blk.timeout=120000",
                          "--disk", "path=\(top)" + (format.map { ",format=\($0)" } ?? ""), "--api-socket", socket])
    }

    /// A destination waiting with `--disk path=OVERLAY` (in `dir`) and the `blk`
    /// log guest writing on `image` at a source with an API socket; returned once
    /// both are ready and the guest has logged 200 writes.
    static func startPair(_ dir: URL, image: String, format: String? = nil) throws
        -> (destination: BackgroundVM, source: BackgroundVM, overlay: String, socket: String, port: UInt16) {
        let overlay = dir.appendingPathComponent("dest.qcow2").path
        let socket = dir.appendingPathComponent("src.sock").path
        let port = MigrationPair.freePort()
        let destination = try BackgroundVM(["run", "--incoming", "tcp:127.0.0.1:\(port)", "--insecure-migration",
                                            "--disk", "path=\(overlay)", "--log-level", "info"])
        let source = try Self.source(image, socket: socket, format: format)
        try #require(destination.errors.waitFor("waiting for an incoming VM", timeout: 60), "\(destination.errors.text)")
        try #require(APILifecycleTests.waitForSocket(socket, vm: source), "no API: \(source.errors.text)")
        try #require(source.output.waitFor("blk: log 200\n", timeout: 60), "\(source.output.text.suffix(300))")
        return (destination, source, overlay, socket, port)
    }

    @Test func theTopLayerFollowsTheMemoryOntoTheDestinationsOverlay() throws {
        let dir = try Shell.temporaryDirectory("migrate-disk-copy")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (base, top) = try Self.images(dir)
        let (destination, source, overlay, socket, port) = try Self.startPair(dir, image: top)

        let run = try SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration",
                                        "tcp:127.0.0.1:\(port)"], timeout: 120)
        let context = "\(run.stderr) \(destination.errors.text.suffix(600)) source: \(source.errors.text.suffix(1500))"
        try #require(run.status == 0, "skiff migrate: \(context)")
        #expect(source.waitForExit(timeout: 30) == 0, "source: \(source.errors.text)")
        let before = source.output.text
        let done = SnapshotDiskTests.logged(before).max() ?? 0
        #expect(done < Self.writes - 100, "the guest finished before the migration: nothing written after it")
        #expect(destination.waitForExit(timeout: 180) == 0, "\(destination.errors.text.suffix(600))")
        let after = destination.output.text
        // Every acknowledged write, before and after the migration, is read back at the destination.
        #expect(after.contains("blk: PASS log: \(Self.writes) sectors read back with the pattern"), "\(after.suffix(400))")
        #expect(after.contains("blk: PASS all 2 checks"), "destination: \(after.suffix(400))")
        #expect(!(before + after).contains("FAIL"), "\((before + after).suffix(400))")
        let logged = SnapshotDiskTests.logged(before + after)
        #expect(logged == Array(0..<Self.writes),
                "the log is not one unbroken run: \(logged.count) entries, \(logged.first ?? -1)…\(logged.last ?? -1)")

        // Both images clean; the new overlay sits on the same base.
        #expect(try Shell.run("qemu-img check \(top)").contains("No errors were found"))
        #expect(try Shell.run("qemu-img check \(overlay)").contains("No errors were found"))
        let info = try Shell.run("qemu-img info \(overlay)")
        #expect(info.contains("backing file: \(base)"), "\(info)")
        // What the top layer held before the guest ran came across: its data, the
        // zero cluster over the base's data, and the base shows through elsewhere.
        #expect(try Self.holds(overlay, 0x22, at: 8 << 20, 4 << 20))
        #expect(try Self.holds(overlay, 0, at: 0, 65536))
        #expect(try Self.holds(overlay, 0x11, at: 65536, (1 << 20) - 65536))
        // The guest's writes after the migration are in the destination's overlay only.
        #expect(try !Self.holds(top, 0, at: Self.logOffset(done), 512), "the source's last write is missing at the source")
        #expect(try Self.holds(top, 0, at: Self.logOffset(Self.writes - 1), 512), "a write after the migration reached the source's image")
        #expect(try !Self.holds(overlay, 0, at: Self.logOffset(Self.writes - 1), 512))
        let log = destination.errors.text
        #expect(log.contains("migration state decoded"), "\(log.suffix(600))")
    }

    /// The same through the API: an empty `skiff run --api-socket --disk
    /// path=NEW` takes the VM with `vm.receive-migration` (the receive runs on
    /// the API's threads, under their seccomp role).
    @Test func theAPIReceivesADiskIntoTheOverlayGivenOnItsCommandLine() throws {
        let dir = try Shell.temporaryDirectory("migrate-disk-copy-api")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, top) = try Self.images(dir)
        let overlay = dir.appendingPathComponent("dest.qcow2").path
        let socket = dir.appendingPathComponent("src.sock").path
        let receiverSocket = dir.appendingPathComponent("receiver.sock").path
        let receiver = try BackgroundVM(["run", "--api-socket", receiverSocket, "--disk", "path=\(overlay)"])
        let source = try Self.source(top, socket: socket)
        try #require(APILifecycleTests.waitForSocket(receiverSocket, vm: receiver), "\(receiver.errors.text)")
        try #require(APILifecycleTests.waitForSocket(socket, vm: source), "no API: \(source.errors.text)")
        let port = MigrationPair.freePort()
        let body = #"{"receiver_url": "tcp:127.0.0.1:\#(port)", "insecure_migration": true}"#
        let answer = Thread.detachedResult {
            try? Shell.run("curl -s -o /dev/null -w '%{http_code}' --unix-socket \(receiverSocket) -X PUT -d '\(body)' "
                + "http://localhost/api/v1/vm.receive-migration", timeout: 120)
        }
        var listening = false
        for _ in 0..<200 where !listening {
            usleep(50_000)
            listening = (try? APILifecycleTests.state(receiverSocket)) == "Receiving"
        }
        try #require(listening)
        try #require(source.output.waitFor("blk: log 200\n", timeout: 60), "\(source.output.text.suffix(300))")
        var run = try SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration", "tcp:127.0.0.1:\(port)"],
                                       timeout: 120)
        for _ in 0..<10 where run.status != 0 && run.stderr.contains("Connection refused") {
            Thread.sleep(forTimeInterval: 0.2)
            run = try SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration", "tcp:127.0.0.1:\(port)"],
                                       timeout: 120)
        }
        let context = "\(run.stderr) receiver: \(receiver.errors.text.suffix(800)) source: \(source.errors.text.suffix(800))"
        try #require(run.status == 0, "skiff migrate: \(context)")
        #expect(answer.wait(timeout: 60) == "204")
        #expect(source.waitForExit(timeout: 30) == 0)
        let before = source.output.text
        #expect(receiver.output.waitFor("blk: PASS all 2 checks", timeout: 180), "\(receiver.output.text.suffix(400))")
        #expect(SnapshotDiskTests.logged(before + receiver.output.text) == Array(0..<Self.writes))
        #expect(receiver.waitForExit(timeout: 60) == 0, "\(receiver.errors.text.suffix(600))")  // the guest's end ends it
        #expect(try Shell.run("qemu-img check \(overlay)").contains("No errors were found"))
    }

    /// The destination's copy of the backing chain is another file (a bind mount
    /// over the base's path in its own mount namespace): refused before any
    /// memory, naming the disk and the file; nothing is left at the overlay's path.
    @Test(.enabled(if: Shell.isRoot && Shell.has("unshare") && Shell.has("mount"), "needs root, unshare and mount"))
    func anotherBackingFileIsRefusedBeforeAnyTransfer() throws {
        let dir = try Shell.temporaryDirectory("migrate-disk-copy-chain")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (base, top) = try Self.images(dir)
        let other = dir.appendingPathComponent("other.qcow2").path
        try Shell.run("cp \(base) \(other) && qemu-io -c 'write -P 0x33 32M 64k' \(other) >/dev/null")
        let overlay = dir.appendingPathComponent("dest.qcow2").path
        let socket = dir.appendingPathComponent("src.sock").path
        let port = MigrationPair.freePort()
        let destination = try BackgroundVM(["-m", "--propagation", "private", "sh", "-c",
                                            "mount --bind \(other) \(base) && exec \(SkiffProcess.binary.path) run "
                                            + "--incoming tcp:127.0.0.1:\(port) --insecure-migration --disk path=\(overlay) --log-level info"],
                                           tool: "/usr/bin/unshare")
        let source = try Self.source(top, socket: socket)
        try #require(destination.errors.waitFor("waiting for an incoming VM", timeout: 60), "\(destination.errors.text)")
        try #require(APILifecycleTests.waitForSocket(socket, vm: source), "no API: \(source.errors.text)")
        try #require(source.output.waitFor("blk: log 200\n", timeout: 60), "\(source.output.text.suffix(300))")
        let run = try SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration",
                                        "tcp:127.0.0.1:\(port)"], timeout: 120)
        #expect(run.status != 0)
        #expect(run.stderr.contains("disk 0: the backing file \(base) differs from the source's"), "\(run.stderr)")
        #expect(destination.waitForExit(timeout: 30) == 1)
        #expect(!FileManager.default.fileExists(atPath: overlay), "the refused destination left \(overlay)")
        #expect(source.waitForExit(timeout: 180) == 0, "\(source.errors.text.suffix(600))")
        #expect(source.output.text.contains("blk: PASS all 2 checks"), "\(source.output.text.suffix(400))")
        #expect(SnapshotDiskTests.logged(source.output.text) == Array(0..<Self.writes))
        #expect(try Shell.run("qemu-img check \(top)").contains("No errors were found"))
    }

    /// A raw disk cannot be sent without shared storage: refused at the config
    /// step with a clear message; the source runs on.
    @Test func aRawDiskWithoutSharedStorageIsRefused() throws {
        let dir = try Shell.temporaryDirectory("migrate-disk-copy-raw")
        defer { try? FileManager.default.removeItem(at: dir) }
        let raw = dir.appendingPathComponent("disk.raw").path
        try Shell.run("truncate -s 64M \(raw)")
        let (destination, source, overlay, socket, port) = try Self.startPair(dir, image: raw, format: "raw")
        let run = try SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration",
                                        "tcp:127.0.0.1:\(port)"], timeout: 120)
        #expect(run.status != 0)
        #expect(run.stderr.contains("disk 0: \(raw) is a raw image; without shared storage only a qcow2 disk's top layer can be sent"),
                "\(run.stderr)")
        #expect(destination.waitForExit(timeout: 30) == 1)
        #expect(!FileManager.default.fileExists(atPath: overlay))
        #expect(source.waitForExit(timeout: 180) == 0, "\(source.errors.text.suffix(600))")
        #expect(SnapshotDiskTests.logged(source.output.text) == Array(0..<Self.writes))
    }

    /// Stops `pid` and returns once every one of its threads is stopped (a
    /// signal's stop is not immediate on another core).
    static func stop(_ pid: pid_t) {
        kill(pid, SIGSTOP)
        for _ in 0 ..< 2_000 {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            let running = tasks.contains { task in
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { return false }
                // The state follows the command name: "T" stopped, "Z"/"X" gone.
                let state = stat[stat.index(close, offsetBy: 2)]
                return !"TtZX".contains(state)
            }
            if !running { return }
            usleep(500)
        }
    }

    /// The destination killed while the top layer (48 MiB here) is on its way:
    /// the source's guest writes on to its end, its image intact and clean.
    @Test func aDestinationKilledMidDiskTransferLeavesTheSourceIntact() throws {
        let dir = try Shell.temporaryDirectory("migrate-disk-copy-cut")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, top) = try Self.images(dir, topData: "48M")
        let (destination, source, overlay, socket, port) = try Self.startPair(dir, image: top)
        let migrate = DetachedResult {
            try? SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration", "tcp:127.0.0.1:\(port)"],
                                  timeout: 120)
        }
        // Killed once the overlay holds a few MiB of the 48. The destination runs in
        // short slices and its overlay is measured while it is stopped, so the size
        // seen is the size at the kill: a busy host cannot let the transfer run past
        // the window between a look and the kill.
        let pid = destination.process.processIdentifier
        let deadline = Date().addingTimeInterval(60)
        var size: UInt64 = 0
        while Date() < deadline {
            Self.stop(pid)
            size = ((try? FileManager.default.attributesOfItem(atPath: overlay))?[.size] as? UInt64) ?? 0
            if size >= 4 << 20 { break }
            kill(pid, SIGCONT)
            usleep(1_000)
        }
        kill(pid, SIGKILL)
        let finished = try #require(migrate.wait(timeout: 120))
        let run = try #require(finished)
        let context = "\(run.stderr.suffix(400)) \(destination.errors.text.suffix(600))"
        #expect(size >= 4 << 20 && size < 48 << 20, "the overlay had \(size) bytes when the destination was killed: \(context)")
        #expect(run.status != 0, "the migration finished before the kill: \(run.stdout)")
        #expect(source.waitForExit(timeout: 180) == 0, "\(source.errors.text.suffix(600))")
        let out = source.output.text
        #expect(out.contains("blk: PASS log: \(Self.writes) sectors read back with the pattern"), "\(out.suffix(400))")
        #expect(SnapshotDiskTests.logged(out) == Array(0..<Self.writes))
        #expect(try Shell.run("qemu-img check \(top)").contains("No errors were found"))
        #expect(try Self.holds(top, 0x22, at: 8 << 20, 48 << 20))
    }
}
