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

/// Acceptance for the devices: the lean Linux finds /dev/vda on a qcow2 image
/// and eth0 on a TAP. It reads a marker the host wrote (sector 0), writes one
/// the host then reads back (sector 1), and pings the host through the TAP.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: GuestLinux.shouldRun, GuestLinux.skipReason),
       .enabled(if: Shell.isRoot && FileManager.default.fileExists(atPath: "/dev/net/tun") && Shell.has("ip")
                    && Shell.has("qemu-img"), "needs root, /dev/net/tun, iproute2 and qemu-img"))
struct LinuxDeviceTests {
    @Test func guestReadsAndWritesQcow2AndPingsTheHost() throws {
        let kernel = try #require(GuestLinux.kernel, "guest kernel missing: run scripts/guest-linux.sh")
        let initrd = try #require(GuestLinux.initrd, "guest initramfs missing: run scripts/guest-linux.sh")
        let dir = try Shell.temporaryDirectory("linux-dev")
        defer { try? FileManager.default.removeItem(at: dir) }

        // The host's marker in sector 0 of a qcow2 image.
        let raw = dir.appendingPathComponent("seed.raw").path
        let image = dir.appendingPathComponent("disk.qcow2").path
        let marker = "SKIFF-HOST-MARKER \(getpid())"
        var sector0 = Array(marker.utf8)
        sector0 += [UInt8](repeating: 0x20, count: 511 - sector0.count) + [0x0A]
        var seed = Data(sector0)
        seed.append(Data(count: (16 << 20) - 512))
        try seed.write(to: URL(fileURLWithPath: raw))
        try Shell.run("qemu-img convert -f raw -O qcow2 \(raw) \(image)")
        let expectedMD5 = try Shell.run("head -c 512 \(raw) | md5sum").split(separator: " ")[0]

        let namespace = "skiff-lx-\(getpid())"
        try Shell.run("ip netns add \(namespace)")
        defer { _ = try? Shell.run("ip netns del \(namespace)") }
        try Shell.run("""
            ip netns exec \(namespace) ip tuntap add dev tap0 mode tap vnet_hdr && \
            ip netns exec \(namespace) ip addr add 10.0.2.2/24 dev tap0 && \
            ip netns exec \(namespace) ip link set tap0 up
            """)
        let cmdline = GuestLinux.commandLine + " skiff.test=blk,net skiff.ip=10.0.2.15/24 skiff.peer=10.0.2.2"
        let run = try SkiffProcess.runTool(URL(fileURLWithPath: "/usr/bin/env"),
                                           ["ip", "netns", "exec", namespace, SkiffProcess.binary.path, "run",
                                            "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline,
                                            "--memory", "256M", "--disk", "path=\(image),serial=acceptance",
                                            "--net", "tap=tap0"], timeout: GuestLinux.bootTimeout)
        let tail = String(run.stdout.suffix(3000))
        #expect(run.status == 0, "stderr: \(run.stderr)\nconsole tail:\n\(tail)")
        #expect(run.stdout.contains("SKIFF-BLK: vda sectors=32768 ro=0 sector0-md5=\(expectedMD5)"), "console tail:\n\(tail)")
        #expect(run.stdout.contains("SKIFF-BLK: ok wrote+read sector 1"), "console tail:\n\(tail)")
        #expect(run.stdout.contains("SKIFF-NET: ok 3 packets transmitted, 3 packets received"), "console tail:\n\(tail)")

        // What the guest wrote is in the image, and the image is consistent.
        try Shell.run("qemu-img check -q \(image)")
        let flat = dir.appendingPathComponent("after.raw").path
        try Shell.run("qemu-img convert -O raw \(image) \(flat)")
        let sector1 = try Shell.run("dd if=\(flat) bs=512 skip=1 count=1 2>/dev/null")
        #expect(sector1.hasPrefix("SKIFF-BLK-PATTERN "), "sector 1 holds: \(sector1.prefix(80))")
        print("LinuxDeviceTests: blk + net acceptance after \(String(format: "%.1f", run.seconds)) s")
    }
}
