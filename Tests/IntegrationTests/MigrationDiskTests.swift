import Foundation
import Testing

/// Live migration of the `blk` log guest (one-sector writes, each checked to
/// be zeros before it is written) with a qcow2 overlay over a base image, the
/// same files at both ends (shared storage): the log goes on at the
/// destination without a gap or a repeated write, the destination holds the
/// image lock, and the image is clean at the end. See docs/migration.md, "Disks".
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: Shell.has("qemu-img") && Shell.has("qemu-io"), "needs qemu-img and qemu-io"),
       .serialized)
struct MigrationDiskTests {
    static let writes = 3000

    @Test func theBlkLogGoesOnAtTheDestinationOnTheSameImage() throws {
        let dir = try Shell.temporaryDirectory("migrate-disk")
        defer { try? FileManager.default.removeItem(at: dir) }
        let top = dir.appendingPathComponent("top.qcow2").path
        try Shell.run("qemu-img create -q -f qcow2 \(dir.path)/base.qcow2 64M && "
            + "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 \(top)")
        let socket = dir.appendingPathComponent("src.sock").path
        let port = MigrationPair.freePort()
        let destination = try BackgroundVM(["run", "--incoming", "tcp:127.0.0.1:\(port)", "--insecure-migration",
                                            "--log-level", "info"])
        let source = try BackgroundVM(["run", "--kernel", try Firmware.path("blk"), "--memory", "64M",
                                       "--cmdline", "blk.mode=log blk.count=\(Self.writes) blk.timeout=120000",
                                       "--disk", "path=\(top)", "--api-socket", socket])
        try #require(destination.errors.waitFor("waiting for an incoming VM", timeout: 60), "\(destination.errors.text)")
        try #require(APILifecycleTests.waitForSocket(socket, vm: source), "no API: \(source.errors.text)")
        try #require(source.output.waitFor("blk: log 200\n", timeout: 60), "\(source.output.text.suffix(300))")
        // While the source writes, the image is locked against a second writer.
        #expect(throws: (any Error).self) { try Shell.run("qemu-io -c 'read 0 512' \(top)") }

        let run = try SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration",
                                        "tcp:127.0.0.1:\(port)"], timeout: 120)
        try #require(run.status == 0, "skiff migrate: \(run.stderr) \(destination.errors.text.suffix(600))")
        #expect(source.waitForExit(timeout: 30) == 0, "source: \(source.errors.text)")
        let before = source.output.text
        let done = SnapshotDiskTests.logged(before).max() ?? 0
        #expect(destination.output.waitFor("blk: log \(done + 50)\n", timeout: 60),
                "destination: \(destination.output.text.suffix(300)) \(destination.errors.text.suffix(600))")
        // The destination holds the lock now (the source has exited; its lock went with it anyway).
        #expect(throws: (any Error).self) { try Shell.run("qemu-io -r -c 'read 0 512' \(top)") }
        #expect(destination.waitForExit(timeout: 180) == 0, "\(destination.errors.text.suffix(600))")
        let after = destination.output.text
        #expect(after.contains("blk: PASS all 2 checks"), "destination: \(after.suffix(400))")
        #expect(!(before + after).contains("FAIL"), "\((before + after).suffix(400))")
        // Joined first: a line may be cut by the migration ("blk: log 30" there, "5" here).
        let logged = SnapshotDiskTests.logged(before + after)
        #expect(logged == Array(0..<Self.writes),
                "the log is not one unbroken run: \(logged.count) entries, \(logged.first ?? -1)…\(logged.last ?? -1)")
        #expect(try Shell.run("qemu-img check \(top)").contains("No errors were found"))
    }

    /// The destination sees another file at the image path (a bind mount in its
    /// own mount namespace): it refuses at the state step, after the source
    /// released its lock; the source locks the image again and its guest
    /// writes on to the end.
    @Test(.enabled(if: Shell.isRoot && Shell.has("unshare") && Shell.has("mount"), "needs root, unshare and mount"))
    func aDestinationThatCannotOpenTheImageLeavesItLockedBySource() throws {
        let dir = try Shell.temporaryDirectory("migrate-disk-fail")
        defer { try? FileManager.default.removeItem(at: dir) }
        let top = dir.appendingPathComponent("top.qcow2").path
        let other = dir.appendingPathComponent("other").path
        try Shell.run("qemu-img create -q -f qcow2 \(top) 64M && head -c 1048576 /dev/zero > \(other)")
        let socket = dir.appendingPathComponent("src.sock").path
        let port = MigrationPair.freePort()
        let destination = try BackgroundVM(["-m", "--propagation", "private", "sh", "-c",
                                            "mount --bind \(other) \(top) && exec \(SkiffProcess.binary.path) run "
                                            + "--incoming tcp:127.0.0.1:\(port) --insecure-migration --log-level info"],
                                           tool: "/usr/bin/unshare")
        let source = try BackgroundVM(["run", "--kernel", try Firmware.path("blk"), "--memory", "64M",
                                       "--cmdline", "blk.mode=log blk.count=\(Self.writes) blk.timeout=120000",
                                       "--disk", "path=\(top)", "--api-socket", socket])
        try #require(destination.errors.waitFor("waiting for an incoming VM", timeout: 60), "\(destination.errors.text)")
        try #require(APILifecycleTests.waitForSocket(socket, vm: source), "no API: \(source.errors.text)")
        try #require(source.output.waitFor("blk: log 200\n", timeout: 60), "\(source.output.text.suffix(300))")
        let run = try SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration",
                                        "tcp:127.0.0.1:\(port)"], timeout: 120)
        #expect(run.status != 0)
        #expect(run.stderr.contains("cannot open the VM's devices here"), "\(run.stderr)")
        #expect(destination.waitForExit(timeout: 30) != 0)
        // The source's lock is back: a second writer is refused while the guest writes on.
        #expect(throws: (any Error).self) { try Shell.run("qemu-io -c 'read 0 512' \(top)") }
        #expect(source.waitForExit(timeout: 180) == 0, "\(source.errors.text.suffix(600))")
        #expect(source.output.text.contains("blk: PASS all 2 checks"), "\(source.output.text.suffix(400))")
        #expect(SnapshotDiskTests.logged(source.output.text) == Array(0..<Self.writes))
        #expect(!source.errors.text.contains("could not lock"), "\(source.errors.text.suffix(400))")
    }
}
