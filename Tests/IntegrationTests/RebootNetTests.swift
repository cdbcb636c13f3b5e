import Foundation
import Testing

/// `vm.reboot` of a VM with a network card: the rebuilt VM opens the same TAP in
/// the same process (a TAP takes one descriptor at a time, so the old machine's
/// must be closed first) and its guest reaches the host again. With the filters
/// on, the rebuilt card gets no io_uring (`io_uring_setup` is refused after
/// set-up) and sends frame by frame; the first boot's card sends in batches.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: Shell.isRoot && FileManager.default.fileExists(atPath: "/dev/net/tun") && Shell.has("ip"),
                "needs root, /dev/net/tun and iproute2"),
       .serialized)
struct RebootNetTests {
    @Test func aRebootedGuestPingsTheHostOnTheSameTap() throws {
        let namespace = "skiff-rb-\(getpid())"
        try Shell.run("ip netns add \(namespace)")
        defer { _ = try? Shell.run("ip netns del \(namespace)") }
        try SnapshotNetTests.makeTap("tap0", in: namespace)
        let dir = try Shell.temporaryDirectory("rebootnet")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let vm = try SnapshotNetTests.startPingingGuest(in: namespace, socket: socket)
        try #require(vm.output.waitFor("seq 3 ", timeout: 60), "\(vm.output.text.suffix(400)) \(vm.errors.text)")
        let reboot = try SkiffProcess.run(["reboot", "--api-socket", socket], timeout: 30)
        #expect(reboot.status == 0, "\(reboot.stderr)")
        // The second boot answers pings from seq 1 again: "seq 3 " twice in the output.
        let deadline = Date().addingTimeInterval(60)
        while vm.output.text.components(separatedBy: "echo reply from 10.0.2.1 seq 3 ").count < 3 && Date() < deadline {
            usleep(20_000)
        }
        #expect(vm.output.text.components(separatedBy: "echo reply from 10.0.2.1 seq 3 ").count == 3,
                "no pings after the reboot: \(vm.output.text.suffix(600)) \(vm.errors.text)")
        #expect(!vm.errors.text.contains("in use"), "\(vm.errors.text)")
        let shutdown = try SkiffProcess.run(["shutdown", "--api-socket", socket], timeout: 30)
        #expect(shutdown.status == 0, "\(shutdown.stderr)")
        #expect(vm.waitForExit(timeout: 60) == 0, "stderr: \(vm.errors.text)")
        #expect(!vm.errors.text.contains("seccomp"), "stderr: \(vm.errors.text)")
    }
}
