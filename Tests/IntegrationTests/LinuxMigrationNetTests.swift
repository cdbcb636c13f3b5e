import Foundation
import Testing

/// Acceptance for live migration on the network: the guest Linux holds a TCP
/// connection to the "client" namespace (`skiff.tcp=` in its init: busybox `nc`
/// echoing numbered lines) and is migrated, running, from host A to host B
/// (`MigrationNetTests.TwoHosts`: each host's TAP on its own bridge, uplinked to
/// one switch). The same connection must go on exchanging lines afterwards, the
/// switch must learn the guest's MAC on B's uplink within 2 s, and the guest's
/// own announce (VIRTIO_NET_F_GUEST_ANNOUNCE, negotiated by Linux's virtio_net)
/// must reach the segment: the switch bridge has an address of its own with
/// `arp_accept=1`, so only a gratuitous ARP from the guest (sender = target =
/// its IP) can create a neighbour entry for the guest there. The init sets up
/// eth0 without `arp_notify`, so the guest sends none until it is asked.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: GuestLinux.shouldRun, GuestLinux.skipReason),
       .enabled(if: Shell.isRoot && FileManager.default.fileExists(atPath: "/dev/net/tun") && Shell.has("ip")
                    && Shell.has("bridge") && Shell.has("busybox") && Shell.has("sysctl"),
                "needs root, /dev/net/tun, iproute2 (ip, bridge), sysctl and busybox (nc)"),
       .serialized)
struct LinuxMigrationNetTests {
    static let mac = "52:54:00:12:34:57"
    static let guestIP = "10.0.2.15"
    static let port = 7000

    /// The client's end: busybox `nc -l` in the client namespace, fed through a pipe.
    final class Client {
        let process = Process()
        let output: OutputWatcher
        private let input = Pipe()
        private let outPipe = Pipe()

        init(namespace: String, port: Int) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["ip", "netns", "exec", namespace, "busybox", "nc", "-l", "-p", "\(port)"]
            process.standardInput = input
            process.standardOutput = outPipe
            process.standardError = outPipe
            try process.run()
            output = OutputWatcher(fd: outPipe.fileHandleForReading.fileDescriptor)
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
            output.stop()
        }

        func send(_ line: String) { input.fileHandleForWriting.write(Data((line + "\n").utf8)) }
        func close() { try? input.fileHandleForWriting.close() }

        /// The (n, line) pairs echoed so far, whole lines only.
        var echoes: [(Int, String)] {
            output.text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().compactMap { line in
                let f = line.split(separator: " ", maxSplits: 2)
                guard f.count == 3, f[0] == "SKIFF-ECHO", let n = Int(f[1]) else { return nil }
                return (n, String(f[2]))
            }
        }
    }

    @Test func aTCPConnectionSurvivesTheMoveAndTheGuestAnnouncesItself() throws {
        let kernel = try #require(GuestLinux.kernel, "guest kernel missing: run scripts/guest-linux.sh")
        let initrd = try #require(GuestLinux.initrd, "guest initramfs missing: run scripts/guest-linux.sh")
        let hosts = try MigrationNetTests.TwoHosts()
        defer { hosts.down() }
        // The switch's own address: an observer that learns the guest only from a gratuitous ARP.
        try Shell.run("ip -n \(hosts.lan) addr add 10.0.2.3/24 dev br0 && "
            + "ip netns exec \(hosts.lan) sysctl -qw net.ipv4.conf.br0.arp_accept=1")
        let dir = try Shell.temporaryDirectory("linux-migrate-net")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("src.sock").path
        let migrationPort = MigrationPair.freePort()

        let client = try Client(namespace: hosts.client, port: Self.port)
        let destination = try hosts.skiff(in: hosts.b, ["run", "--incoming", "tcp:192.168.77.2:\(migrationPort)",
                                                       "--insecure-migration", "--net", "tap=tap1", "--log-level", "info"])
        let source = try hosts.skiff(in: hosts.a, [
            "run", "--kernel", kernel, "--initrd", initrd, "--memory", "256M", "--net", "tap=tap0,mac=\(Self.mac)",
            "--cmdline", GuestLinux.commandLine + " skiff.tcp=10.0.2.1:\(Self.port) skiff.ip=\(Self.guestIP)/24",
            "--api-socket", socket,
        ])
        try #require(destination.errors.waitFor("waiting for an incoming VM", timeout: 60), "\(destination.errors.text)")
        try #require(source.output.waitFor("SKIFF-TCP: connecting", timeout: GuestLinux.bootTimeout),
                     "the guest did not reach its TCP step:\n\(source.output.text.suffix(3000))")

        // Lines before the move; the first waits for the guest's nc to connect and start its talker.
        func exchange(_ line: String, timeout: Double) -> Bool {
            client.send(line)
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline, !client.echoes.contains(where: { $0.1 == line }) { usleep(50_000) }
            return client.echoes.contains { $0.1 == line }
        }
        try #require(exchange("before-1", timeout: 300),
                     "no echo: client \(client.output.text.suffix(300)) console \(source.output.text.suffix(1500))")
        #expect(exchange("before-2", timeout: 120))
        #expect(try hosts.switchPort(of: Self.mac) == "lanA")
        // Nothing has taught the observer the guest's address yet.
        _ = try? Shell.run("ip -n \(hosts.lan) neigh flush dev br0")
        #expect(try Shell.run("ip -n \(hosts.lan) neigh show \(Self.guestIP) dev br0").isEmpty)

        // Live: the guest runs (and its connection is open) while memory is copied.
        client.send("during")
        let migrate = try SkiffProcess.run(["migrate", "--api-socket", socket, "--insecure-migration",
                                            "tcp:192.168.77.2:\(migrationPort)"], timeout: 600)
        try #require(migrate.status == 0, "skiff migrate: \(migrate.stderr) \(destination.errors.text.suffix(600))")
        #expect(source.waitForExit(timeout: 60) == 0, "source: \(source.errors.text.suffix(600))")
        let moved = Date()
        var learned: String?
        while Date().timeIntervalSince(moved) < 2, learned != "lanB" {
            learned = try hosts.switchPort(of: Self.mac)
            usleep(20_000)
        }
        #expect(learned == "lanB", "the switch did not learn B's port within 2 s: \(learned ?? "nothing")")
        let learnedAfter = Date().timeIntervalSince(moved)

        // The same connection goes on: the guest's per-connection count continues.
        #expect(exchange("after-1", timeout: 300),
                "client \(client.output.text.suffix(400)) console \(destination.output.text.suffix(1500)) \(destination.errors.text.suffix(800))")
        #expect(exchange("after-2", timeout: 120))
        let echoes = client.echoes
        #expect(echoes.map(\.0) == Array(1...echoes.count), "echo numbering \(echoes)")
        #expect(echoes.map(\.1) == ["before-1", "before-2", "during", "after-1", "after-2"], "\(echoes)")
        #expect(client.process.isRunning, "the client's connection ended")

        // The guest's own announce: its gratuitous ARP reached the segment, and it acknowledged.
        var neighbour = ""
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, !neighbour.contains(Self.mac) {
            neighbour = (try? Shell.run("ip -n \(hosts.lan) neigh show \(Self.guestIP) dev br0")) ?? ""
            usleep(200_000)
        }
        #expect(neighbour.contains(Self.mac), "no gratuitous ARP from the guest: '\(neighbour)'")
        let garpAfter = Date().timeIntervalSince(moved)
        #expect(destination.errors.waitFor("acknowledged by the guest", timeout: 30), "\(destination.errors.text.suffix(800))")
        #expect(destination.errors.text.contains("guest announce requested"), "\(destination.errors.text.suffix(800))")

        // Closing the client's side ends the guest's talker; init then reboots, which ends the VM.
        client.close()
        #expect(destination.output.waitFor("SKIFF-TCP: connection closed", timeout: 300),
                "console: \(destination.output.text.suffix(1500))")
        #expect(destination.waitForExit(timeout: 300) == 0, "destination: \(destination.errors.text.suffix(800))")
        let console = source.output.text + destination.output.text
        #expect(!console.contains("FAIL") && !console.contains("Oops"), "console: \(console.suffix(3000))")
        // The move (its downtime) must not look like a stuck CPU to the guest. Only
        // the destination's console counts: on a loaded kvm_pvm host the source's
        // guest may report one before anything moved (its first TCP connect runs
        // the kernel's ChaCha RNG in emulated CPL0 code for tens of seconds).
        #expect(!destination.output.text.contains("soft lockup"), "console: \(destination.output.text.suffix(3000))")
        print("LinuxMigrationNetTests: switch on lanB \(Int(learnedAfter * 1000)) ms after the source exited, "
            + "the guest's gratuitous ARP seen within \(Int(garpAfter * 1000)) ms; "
            + destination.errors.text.split(separator: "\n").filter { $0.contains("announce") }.joined(separator: " | "))
    }
}
