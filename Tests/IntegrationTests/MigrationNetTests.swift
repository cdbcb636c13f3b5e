import Foundation
import Testing

/// Two hosts on one machine: network namespaces "host A" and "host B", each
/// with a TAP on its own bridge uplinked (veth) to a "switch" namespace's
/// bridge, the L2 segment where a "client" namespace sits too; the migration
/// stream goes from A to B over a veth link of their own.
///
///     client eth0 ── lanC ┐
///     A: tap0 ─ br0 ─ uplink ─ lanA ├ switch br0
///     B: tap1 ─ br0 ─ uplink ─ lanB ┘
///     A: mig 192.168.77.1 ──── B: mig 192.168.77.2
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: Shell.isRoot && FileManager.default.fileExists(atPath: "/dev/net/tun") && Shell.has("ip")
                    && Shell.has("bridge"),
                "needs root, /dev/net/tun and iproute2 (ip, bridge)"),
       .serialized)
struct MigrationNetTests {
    static let mac = "52:54:00:12:34:56"

    /// The namespaces and links above; `down()` removes them all.
    final class TwoHosts {
        let a, b, client, lan: String
        init() throws {
            let id = getpid()
            (a, b, client, lan) = ("skiff-ma-\(id)", "skiff-mb-\(id)", "skiff-mc-\(id)", "skiff-ml-\(id)")
            do { try up() } catch { down(); throw error }
        }

        private func up() throws {
            for ns in [a, b, client, lan] { try Shell.run("ip netns add \(ns) && ip -n \(ns) link set lo up") }
            try Shell.run("ip -n \(lan) link add br0 type bridge && ip -n \(lan) link set br0 up")
            // Each host: TAP and uplink on a host bridge.
            for (ns, port, tap) in [(a, "lanA", "tap0"), (b, "lanB", "tap1")] {
                try Shell.run("""
                    ip -n \(ns) link add br0 type bridge && ip -n \(ns) link set br0 up && \
                    ip -n \(ns) link add uplink type veth peer name \(port) netns \(lan) && \
                    ip -n \(ns) link set uplink master br0 up && \
                    ip -n \(lan) link set \(port) master br0 up && \
                    ip netns exec \(ns) ip tuntap add dev \(tap) mode tap vnet_hdr && \
                    ip -n \(ns) link set \(tap) master br0 up
                    """)
            }
            try Shell.run("""
                ip -n \(client) link add eth0 type veth peer name lanC netns \(lan) && \
                ip -n \(lan) link set lanC master br0 up && \
                ip -n \(client) addr add 10.0.2.1/24 dev eth0 && ip -n \(client) link set eth0 up
                """)
            try Shell.run("""
                ip -n \(a) link add mig type veth peer name mig netns \(b) && \
                ip -n \(a) addr add 192.168.77.1/30 dev mig && ip -n \(a) link set mig up && \
                ip -n \(b) addr add 192.168.77.2/30 dev mig && ip -n \(b) link set mig up
                """)
        }

        func down() {
            for ns in [a, b, client, lan] { _ = try? Shell.run("ip netns del \(ns)") }
        }

        /// skiff run inside `namespace`, as a background process.
        func skiff(in namespace: String, _ arguments: [String]) throws -> BackgroundVM {
            try BackgroundVM(["ip", "netns", "exec", namespace, SkiffProcess.binary.path] + arguments, tool: "/usr/bin/env")
        }

        /// The switch port the L2 segment sends `mac` to, if it has learned it.
        func switchPort(of mac: String) throws -> String? {
            let fdb = try Shell.run("bridge -n \(lan) fdb show br br0")
            return fdb.split(whereSeparator: \.isNewline).first { $0.hasPrefix(mac + " dev ") }
                .map { String($0.split(separator: " ")[2]) }
        }
    }

    /// The `net` guest pings the client from host A; paused, it migrates to host
    /// B (the only frames with its MAC are then the announcements, so the switch
    /// learning B's port proves them), resumes there and pings on.
    @Test func theNetGuestMovesAndTheSwitchLearnsItsNewPort() throws {
        let hosts = try TwoHosts()
        defer { hosts.down() }
        let dir = try Shell.temporaryDirectory("migrate-net")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("src.sock").path
        let destinationSocket = dir.appendingPathComponent("dst.sock").path
        let port = MigrationPair.freePort()
        let destination = try hosts.skiff(in: hosts.b, ["run", "--incoming", "tcp:192.168.77.2:\(port)", "--insecure-migration",
                                                       "--net", "tap=tap1", "--log-level", "info",
                                                       "--api-socket", destinationSocket])
        let source = try hosts.skiff(in: hosts.a, ["run", "--kernel", try Firmware.path("net"), "--memory", "64M",
                                                  "--net", "tap=tap0,mac=\(Self.mac)",
                                                  "--cmdline", "net.ip=10.0.2.15 net.peer=10.0.2.1 net.count=1000000 net.noirq",
                                                  "--api-socket", socket])
        try #require(destination.errors.waitFor("waiting for an incoming VM", timeout: 60), "\(destination.errors.text)")
        try #require(APILifecycleTests.waitForSocket(socket, vm: source), "no API: \(source.errors.text)")
        try #require(source.output.waitFor("seq 5 ", timeout: 60), "\(source.output.text.suffix(400)) \(source.errors.text)")
        #expect(try hosts.switchPort(of: Self.mac) == "lanA")

        #expect(try SkiffProcess.run(["pause", "--api-socket", socket], timeout: 30).status == 0)
        let atPause = try #require(SnapshotNetTests.lastReply(source.output.text))
        let run = try SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration",
                                        "tcp:192.168.77.2:\(port)"], timeout: 120)
        try #require(run.status == 0, "skiff migrate: \(run.stderr) \(destination.errors.text)")
        #expect(source.waitForExit(timeout: 30) == 0, "source: \(source.errors.text)")
        // Paused at B: only the announcements carry the guest's MAC.
        var learned: String?
        let deadline = Date().addingTimeInterval(2)
        while Date() < deadline, learned != "lanB" {
            learned = try hosts.switchPort(of: Self.mac)
            usleep(20_000)
        }
        #expect(learned == "lanB", "the switch did not learn B's port: \(learned ?? "nothing")")
        #expect(destination.errors.waitFor("RARP frame(s)", timeout: 10), "\(destination.errors.text.suffix(600))")

        #expect(APILifecycleTests.waitForSocket(destinationSocket, vm: destination))
        #expect(try SkiffProcess.run(["resume", "--api-socket", destinationSocket], timeout: 30).status == 0)
        #expect(destination.output.waitFor("seq \(atPause + 5) ", timeout: 60),
                "no echo replies at B: \(destination.output.text.suffix(400)) \(destination.errors.text.suffix(400))")
        #expect(!(source.output.text + destination.output.text).contains("FAIL"), "\(destination.output.text.suffix(300))")
        #expect(try hosts.switchPort(of: Self.mac) == "lanB")
        kill(destination.process.processIdentifier, SIGTERM)
        _ = destination.waitForExit(timeout: 30)
    }

    /// `count` from A to B over the veth link: one unbroken sequence.
    @Test func countMovesOverTheVethLink() throws {
        let hosts = try TwoHosts()
        defer { hosts.down() }
        let dir = try Shell.temporaryDirectory("migrate-veth")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("src.sock").path
        let port = MigrationPair.freePort()
        let every: UInt64 = 2_000_000
        let destination = try hosts.skiff(in: hosts.b, ["run", "--incoming", "tcp:192.168.77.2:\(port)", "--insecure-migration",
                                                       "--log-level", "info"])
        let source = try hosts.skiff(in: hosts.a, ["run", "--kernel", try Firmware.path("count"), "--memory", "128M",
                                                  "--cmdline", "count.every=\(every)", "--api-socket", socket])
        try #require(destination.errors.waitFor("waiting for an incoming VM", timeout: 60), "\(destination.errors.text)")
        try #require(APILifecycleTests.waitForSocket(socket, vm: source) && source.waitForCounts(3, timeout: 60))
        let run = try SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration",
                                        "tcp:192.168.77.2:\(port)"], timeout: 120)
        try #require(run.status == 0, "skiff migrate: \(run.stderr)")
        #expect(source.waitForExit(timeout: 30) == 0)
        let before = source.output.text
        #expect(destination.output.waitFor("count \(every * UInt64(MigrationPair.counts(before).count + 3))\n", timeout: 60),
                "destination: \(destination.errors.text.suffix(400))")
        let counts = MigrationPair.counts(before + destination.output.text)
        #expect(counts == (1...max(1, counts.count)).map { UInt64($0) * every }, "\(counts.prefix(40))")
        kill(destination.process.processIdentifier, SIGTERM)
        _ = destination.waitForExit(timeout: 30)
    }
}
