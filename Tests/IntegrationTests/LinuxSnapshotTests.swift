import Foundation
import Testing

/// Acceptance for snapshot/restore: the lean Linux runs a counting loop whose
/// state is a file in tmpfs (`skiff.loop=N` in its init); it is snapshotted
/// through the control API while it counts, the original is killed, and a new
/// `skiff run --restore` process carries the loop on from the snapshot point:
/// no reboot, no second run of init, no gap and no repeat, to the end of the
/// loop and the guest's own reboot (status 0).
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: GuestLinux.shouldRun, GuestLinux.skipReason),
       .enabled(if: Shell.has("curl"), "needs curl"),
       .serialized)
struct LinuxSnapshotTests {
    static let loopLength = 12

    /// The loop values printed in whole `SKIFF-LOOP k uptime` lines (the guest's
    /// tty ends them with "\r\n", one Character in Swift).
    static func loops(_ text: String) -> [Int] {
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        return lines.dropLast().compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 2, fields[0].hasSuffix("SKIFF-LOOP") else { return nil }
            return Int(fields[1])
        }
    }

    @Test func restoredGuestCarriesItsLoopOnWithoutRebooting() throws {
        let kernel = try #require(GuestLinux.kernel, "guest kernel missing: run scripts/guest-linux.sh")
        let initrd = try #require(GuestLinux.initrd, "guest initramfs missing: run scripts/guest-linux.sh")
        let dir = try Shell.temporaryDirectory("linux-snapshot")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let snapshot = dir.appendingPathComponent("snap").path

        let original = try BackgroundVM(["run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M",
                                         "--cmdline", GuestLinux.commandLine + " skiff.loop=\(Self.loopLength)",
                                         "--api-socket", socket])
        let deadline = Date().addingTimeInterval(GuestLinux.bootTimeout)
        while Self.loops(original.output.text).count < 3 && original.process.isRunning && Date() < deadline {
            usleep(200_000)
        }
        try #require(Self.loops(original.output.text).count >= 3,
                     "no loop lines from the guest; console tail:\n\(original.output.text.suffix(3000))")

        let answer = try APILifecycleTests.http(socket, "PUT", "vm.snapshot",
                                                body: #"{"destination_url": "file://\#(snapshot)"}"#)
        try #require(answer.status == 204, "vm.snapshot: \(answer.status) \(answer.body)")
        // The original is still running after the snapshot; it dies here, as a
        // crashed host would, without a chance to tidy up.
        #expect(try APILifecycleTests.state(socket) == "Running")
        kill(original.process.processIdentifier, SIGKILL)
        _ = original.waitForExit(timeout: 30)
        let before = Self.loops(original.output.text)

        let restored = try BackgroundVM(["run", "--restore", snapshot])
        #expect(restored.waitForExit(timeout: GuestLinux.bootTimeout) == 0, "stderr: \(restored.errors.text)")
        let console = restored.output.text
        let after = Self.loops(console)
        try #require(!after.isEmpty, "the restored guest printed no loop line:\n\(console.suffix(3000))")
        // Continues where the snapshot was: the first value follows one the
        // original printed before it was killed, then one by one to the end.
        let first = after[0]
        #expect(first >= 2 && before.contains(first - 1), "restored from \(first); original printed \(before)")
        #expect(after == Array(first...Self.loopLength), "restored sequence \(after)")
        #expect(!console.contains("SKIFF-INIT: hello"), "init ran again: the guest rebooted\n\(console.suffix(3000))")
        #expect(console.contains("SKIFF-INIT: done"), "console tail:\n\(console.suffix(3000))")
        #expect(!console.contains("soft lockup") && !console.contains("Oops"), "console:\n\(console.suffix(3000))")
    }
}
