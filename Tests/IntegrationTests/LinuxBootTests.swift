import Foundation
import Testing

/// Acceptance: the project's lean Linux boots under `skiff run` to its busybox
/// init, sees every vCPU, and reboots, which ends skiff with status 0.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: GuestLinux.shouldRun, GuestLinux.skipReason),
       .serialized)
struct LinuxBootTests {
    @Test(arguments: [1, 2])
    func bootsToInitAndReboots(cpus: Int) throws {
        let kernel = try #require(GuestLinux.kernel, "guest kernel missing: run scripts/guest-linux.sh")
        let initrd = try #require(GuestLinux.initrd, "guest initramfs missing: run scripts/guest-linux.sh")
        let run = try SkiffProcess.run(["run", "--kernel", kernel, "--initrd", initrd, "--cmdline", GuestLinux.commandLine,
                                        "--cpus", "\(cpus)", "--memory", "256M"], timeout: GuestLinux.bootTimeout)
        let tail = String(run.stdout.suffix(3000))
        #expect(!run.timedOut, "boot did not finish in \(GuestLinux.bootTimeout) s; console tail:\n\(tail)")
        #expect(run.status == 0, "stderr: \(run.stderr)\nconsole tail:\n\(tail)")
        #expect(run.stdout.contains("SKIFF-INIT: hello from the guest"), "console tail:\n\(tail)")
        #expect(run.stdout.contains("SKIFF-CPUS: \(cpus)"), "console tail:\n\(tail)")
        #expect(run.stdout.contains("SKIFF-INIT: done"), "console tail:\n\(tail)")
        print("LinuxBootTests: --cpus \(cpus): init marker and reboot after \(String(format: "%.1f", run.seconds)) s")
    }
}
