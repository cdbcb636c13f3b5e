import Foundation
import Testing

/// The `net` firmware guest talks to a host peer through Skiff's virtio-net and
/// a real TAP device, inside a network namespace the test creates.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: Shell.isRoot && FileManager.default.fileExists(atPath: "/dev/net/tun") && Shell.has("ip"),
                "needs root, /dev/net/tun and iproute2 to make a network namespace and a TAP"))
struct VirtioNetBootTests {
    @Test func guestResolvesAndPingsTheHostOverTAP() throws {
        let namespace = "skiff-nt-\(getpid())"
        try Shell.run("ip netns add \(namespace)")
        defer { _ = try? Shell.run("ip netns del \(namespace)") }
        try Shell.run("""
            ip netns exec \(namespace) ip tuntap add dev tap0 mode tap vnet_hdr && \
            ip netns exec \(namespace) ip addr add 10.0.2.1/24 dev tap0 && \
            ip netns exec \(namespace) ip link set tap0 up
            """)
        let run = try SkiffProcess.runTool(URL(fileURLWithPath: "/usr/bin/env"),
                                           ["ip", "netns", "exec", namespace, SkiffProcess.binary.path,
                                            "run", "--kernel", try Firmware.path("net"), "--memory", "64M",
                                            "--net", "tap=tap0,mac=52:54:00:12:34:56",
                                            "--cmdline", "net.ip=10.0.2.15 net.peer=10.0.2.1"], timeout: 120)
        #expect(run.status == 0, "stderr: \(run.stderr)")
        #expect(run.stdout.contains("mac 52:54:00:12:34:56"), "\(run.stdout)")
        #expect(run.lines.contains { $0.hasPrefix("net: PASS arp 10.0.2.1 is at") }, "\(run.stdout)")
        #expect(run.lines.filter { $0.hasPrefix("net: PASS icmp echo reply from 10.0.2.1") }.count == 3, "\(run.stdout)")
        #expect(run.lines.contains("net: PASS all 5 checks"), "\(run.stdout)")
        // The host side saw the guest's frames.
        let stats = try Shell.run("ip netns exec \(namespace) ip -s link show tap0")
        #expect(stats.contains("RX:"), "\(stats)")
    }

    @Test func badMACAndMissingPermissionAreClear() throws {
        let bad = try SkiffProcess.run(["run", "--kernel", try Firmware.path("hello"), "--net", "tap=tap9,mac=zz:00"], timeout: 30)
        #expect(bad.status != 0 && bad.status < 128)
        #expect(bad.stderr.hasPrefix("skiff: error:") && bad.stderr.lowercased().contains("mac"), "\(bad.stderr)")
    }
}
