import Foundation
import Testing

/// The `net` guest snapshotted while it pings the host through a TAP, then
/// restored: it pings again, first on the TAP of the recorded name, then on
/// another one given with `--net tap=NAME`.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: Shell.isRoot && FileManager.default.fileExists(atPath: "/dev/net/tun") && Shell.has("ip")
                    && Shell.has("curl"),
                "needs root, /dev/net/tun, iproute2 and curl"),
       .serialized)
struct SnapshotNetTests {
    static func makeTap(_ name: String, in namespace: String) throws {
        try Shell.run("""
            ip netns exec \(namespace) ip tuntap add dev \(name) mode tap vnet_hdr && \
            ip netns exec \(namespace) ip addr add 10.0.2.1/24 dev \(name) && \
            ip netns exec \(namespace) ip link set \(name) up
            """)
    }

    /// The `net` guest on `tap0` in `namespace`, pinging 10.0.2.1 (no interrupts),
    /// with its API on `socket`; returns once the API answers.
    static func startPingingGuest(in namespace: String, socket: String) throws -> BackgroundVM {
        let vm = try BackgroundVM(["ip", "netns", "exec", namespace, SkiffProcess.binary.path, "run",
                                   "--kernel", try Firmware.path("net"), "--memory", "64M",
                                   "--net", "tap=tap0,mac=52:54:00:12:34:56",
                                   "--cmdline", "net.ip=10.0.2.15 net.peer=10.0.2.1 net.count=1000000 net.noirq",
                                   "--api-socket", socket], tool: "/usr/bin/env")
        try #require(APILifecycleTests.waitForSocket(socket, vm: vm), "no API: \(vm.errors.text)")
        return vm
    }

    /// The highest echo sequence number answered in `text`.
    static func lastReply(_ text: String) -> Int? {
        text.split(whereSeparator: \.isNewline)
            .compactMap { line -> Int? in
                guard line.hasPrefix("net: PASS icmp echo reply from 10.0.2.1 seq "),
                      let seq = line.split(separator: " ").dropFirst(8).first else { return nil }
                return Int(seq)
            }.max()
    }

    func inNamespace(_ namespace: String, _ arguments: [String]) -> [String] {
        ["ip", "netns", "exec", namespace, SkiffProcess.binary.path] + arguments
    }

    @Test func restoredGuestPingsTheHostAgain() throws {
        let namespace = "skiff-sn-\(getpid())"
        try Shell.run("ip netns add \(namespace)")
        defer { _ = try? Shell.run("ip netns del \(namespace)") }
        try Self.makeTap("tap0", in: namespace)
        let dir = try Shell.temporaryDirectory("snapnet")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let snapshot = dir.appendingPathComponent("snap").path

        let vm = try Self.startPingingGuest(in: namespace, socket: socket)
        try #require(vm.output.waitFor("seq 5 ", timeout: 60), "\(vm.output.text.suffix(400)) \(vm.errors.text)")
        let taken = try SkiffProcess.run(["snapshot", "--api-socket", socket, snapshot], timeout: 120)
        try #require(taken.status == 0, "skiff snapshot: \(taken.stderr)")
        kill(vm.process.processIdentifier, SIGKILL)
        _ = vm.waitForExit(timeout: 30)
        let atSnapshot = try #require(Self.lastReply(vm.output.text))

        // The recorded TAP name, then another TAP given on the command line.
        for tap in ["tap0", "tap1"] {
            let extra = tap == "tap0" ? [] : ["--net", "tap=\(tap)"]
            if tap == "tap1" {
                // The guest's ARP cache (in its RAM) holds tap0's MAC: the new TAP takes it over.
                let mac = try Shell.run("ip netns exec \(namespace) cat /sys/class/net/tap0/address")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                try Shell.run("ip netns exec \(namespace) ip link del tap0")
                try Self.makeTap("tap1", in: namespace)
                try Shell.run("ip netns exec \(namespace) ip link set tap1 address \(mac)")
            }
            let run = try SkiffProcess.runTool(URL(fileURLWithPath: "/usr/bin/env"),
                                               inNamespace(namespace, ["run", "--restore", snapshot] + extra),
                                               timeout: 120, stopWhen: "seq \(atSnapshot + 10) ")
            let last = Self.lastReply(run.stdout)
            #expect((last ?? 0) > atSnapshot + 3, "\(tap): no new echo replies after the restore: \(run.stdout.suffix(300)) \(run.stderr)")
            #expect(!run.stdout.contains("FAIL"), "\(tap): \(run.stdout.suffix(300))")
            let stats = try Shell.run("ip netns exec \(namespace) ip -s link show \(tap)")
            #expect(stats.contains("RX:"), "\(stats)")
        }
    }
}
