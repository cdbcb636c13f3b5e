import Foundation
import Testing

/// Acceptance for pause: the lean Linux (built with the soft-lockup watchdog)
/// is paused for 30 s through the control API and resumed. Its init goes on
/// printing ticks and the kernel reports no soft lockup, because skiff calls
/// KVM_KVMCLOCK_CTRL on every vCPU when it pauses.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: GuestLinux.shouldRun, GuestLinux.skipReason),
       .enabled(if: Shell.has("curl"), "needs curl"),
       .serialized)
struct LinuxPauseTests {
    static func ticks(_ vm: BackgroundVM) -> Int {
        vm.output.text.components(separatedBy: "SKIFF-TICK ").count - 1
    }

    @Test func pausedThirtySecondsCarriesOnWithoutASoftLockup() throws {
        let kernel = try #require(GuestLinux.kernel, "guest kernel missing: run scripts/guest-linux.sh")
        let initrd = try #require(GuestLinux.initrd, "guest initramfs missing: run scripts/guest-linux.sh")
        let dir = try Shell.temporaryDirectory("linux-pause")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let vm = try BackgroundVM(["run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M",
                                   "--cmdline", GuestLinux.commandLine + " skiff.ticks=8", "--api-socket", socket])
        let deadline = Date().addingTimeInterval(GuestLinux.bootTimeout)
        while Self.ticks(vm) < 2 && vm.process.isRunning && Date() < deadline { usleep(200_000) }
        try #require(Self.ticks(vm) >= 2, "no ticks from the guest; console tail:\n\(vm.output.text.suffix(3000))")

        #expect(try APILifecycleTests.http(socket, "PUT", "vm.pause").status == 204)
        let before = Self.ticks(vm)
        usleep(30_000_000)
        #expect(Self.ticks(vm) == before, "the guest printed while paused")
        #expect(try APILifecycleTests.state(socket) == "Paused")
        #expect(try APILifecycleTests.http(socket, "PUT", "vm.resume").status == 204)

        // It carries on to the end of its ticks and reboots, which ends skiff with 0.
        #expect(vm.waitForExit(timeout: GuestLinux.bootTimeout) == 0, "stderr: \(vm.errors.text)")
        let console = vm.output.text
        #expect(Self.ticks(vm) == 8, "console tail:\n\(console.suffix(3000))")
        #expect(console.contains("SKIFF-INIT: done"), "console tail:\n\(console.suffix(3000))")
        #expect(!console.contains("soft lockup"), "the guest reported a soft lockup:\n\(console.suffix(3000))")
        #expect(!FileManager.default.fileExists(atPath: socket))
    }
}
