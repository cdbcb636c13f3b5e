import Foundation
import Testing

/// Whatever fails during a migration, the VM runs in exactly one place: a
/// killed destination or a cut connection leaves the source's guest running
/// with no gap in its count; a killed source leaves the destination exiting
/// non-zero without running anything; a malformed stream is one clear error.
/// CI runs two of each cut; SKIFF_MIGRATION_CUTS=N runs N.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"), .serialized)
struct MigrationFailureTests {
    static let runs = Int(ProcessInfo.processInfo.environment["SKIFF_MIGRATION_CUTS"] ?? "") ?? 2

    /// The source after a failed migration: exits the migrate non-zero, keeps
    /// running, and its count goes on without a gap.
    private func expectSourceCarriesOn(_ pair: MigrationPair, _ run: SkiffRun, _ what: String) {
        #expect(run.status != 0, "\(what): the migration claimed success: \(run.stdout)")
        #expect(run.stderr.contains("cannot migrate"), "\(what): \(run.stderr)")
        let n = pair.source.counts.count
        #expect(pair.source.waitForCounts(n + 3, timeout: 60), "\(what): the source guest stopped: \(pair.source.errors.text.suffix(500))")
        #expect(pair.unbroken(pair.source.counts), "\(what): \(pair.source.counts.suffix(10))")
        #expect((try? APILifecycleTests.state(pair.socket)) == "Running", "\(what)")
        #expect(pair.source.process.isRunning)
    }

    @Test func killingTheDestinationLeavesTheGuestRunningAtTheSource() throws {
        for i in 0..<Self.runs {
            // The dirtying guest makes the transfer last long enough to be cut in.
            let pair = try MigrationPair(name: "cut-dest-\(i)", every: 20_000_000, extra: "count.dirty=32")
            try #require(pair.waitUntilReady(counts: 2))
            let delay = Double.random(in: 0...0.4)
            let killer = Thread {
                Thread.sleep(forTimeInterval: delay)
                kill(pair.destination.process.processIdentifier, SIGKILL)
            }
            killer.start()
            let run = try pair.migrate()
            _ = pair.destination.waitForExit(timeout: 30)
            if run.status == 0 {
                // It finished before the kill: then the destination had the VM, the source is gone.
                #expect(pair.source.waitForExit(timeout: 30) == 0, "run \(i)")
                print("run \(i): migrated before the kill after \(delay) s")
                continue
            }
            expectSourceCarriesOn(pair, run, "run \(i) (kill after \(delay) s)")
            _ = try SkiffProcess.run(["shutdown", "--api-socket", pair.socket], timeout: 30)
            #expect(pair.source.waitForExit(timeout: 30) == 0)
        }
    }

    @Test func droppingTheConnectionLeavesTheGuestRunningAtTheSource() throws {
        for i in 0..<Self.runs {
            let pair = try MigrationPair(name: "cut-link-\(i)", every: 20_000_000, extra: "count.dirty=16")
            try #require(pair.waitUntilReady(counts: 2))
            // Anywhere from inside the handshake to deep in the memory rounds (round 0
            // alone carries the 16 MiB the guest keeps rewriting).
            let cutAfter = [Int.random(in: 1...2000), Int.random(in: 2000...(12 << 20))][i % 2]
            let relay = try CuttingRelay(to: pair.port, cutAfter: cutAfter)
            let run = try pair.migrate(to: relay.port)
            #expect(relay.cut, "run \(i): the relay never cut (after \(cutAfter) bytes)")
            expectSourceCarriesOn(pair, run, "run \(i) (cut after \(cutAfter) bytes)")
            #expect(pair.destination.waitForExit(timeout: 30) == 1, "run \(i): destination \(pair.destination.errors.text)")
            #expect(!pair.destination.output.text.contains("count "), "run \(i): the destination ran the guest")
            _ = try SkiffProcess.run(["shutdown", "--api-socket", pair.socket], timeout: 30)
            #expect(pair.source.waitForExit(timeout: 30) == 0)
        }
    }

    @Test func aRefusingDestinationIsReportedAndTheGuestRunsOn() throws {
        // A stand-in destination that refuses at the config step, as a host without
        // the guest's CPU features would: its reason reaches the user.
        let pair = try MigrationPair(name: "refused")
        try #require(pair.waitUntilReady())
        let listener = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        listen(listener, 1)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        let reason = "this host's CPU lacks features the guest was given: test"
        Thread.detachNewThread {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            var start = [UInt8](repeating: 0, count: 28)
            _ = recv(fd, &start, 28, Int32(MSG_WAITALL))
            let accepted: [UInt8] = [16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            _ = send(fd, accepted, accepted.count, 0)
            var header = [UInt8](repeating: 0, count: 16)
            _ = recv(fd, &header, 16, Int32(MSG_WAITALL))
            let text = Array(reason.utf8)
            let refused: [UInt8] = [19, 0, 0, 0, 0, 0, 0, 0, UInt8(text.count), 0, 0, 0, 0, 0, 0, 0] + text
            _ = send(fd, refused, refused.count, 0)
            Thread.sleep(forTimeInterval: 1)
            close(fd)
        }
        let run = try pair.migrate(to: UInt16(bigEndian: address.sin_port))
        #expect(run.stderr.contains("the destination refused: " + reason), "\(run.stderr)")
        expectSourceCarriesOn(pair, run, "refused")
        _ = try SkiffProcess.run(["shutdown", "--api-socket", pair.socket], timeout: 30)
        #expect(pair.source.waitForExit(timeout: 30) == 0)
    }

    @Test func killingTheSourceMidTransferEndsTheDestinationWithoutRunningTheVM() throws {
        // 448 MiB written once (count.fill) besides the dirtying: the transfer takes ~0.2 s at
        // 2 GiB/s and over half a second here, so the kill lands inside it. With 128 MiB it
        // sometimes finished first under load, and the destination rightly ran the VM.
        let pair = try MigrationPair(name: "kill-src", memory: "512M", every: 20_000_000, extra: "count.dirty=32 count.fill=448")
        try #require(pair.waitUntilReady(counts: 2))
        let killer = Thread {
            // Once memory is flowing: the destination has built the VM and is filling its RAM.
            _ = pair.destination.errors.waitFor("VM built", timeout: 60)
            Thread.sleep(forTimeInterval: 0.05)
            kill(pair.source.process.processIdentifier, SIGKILL)
        }
        killer.start()
        _ = try pair.migrate(timeout: 60)
        let status = pair.destination.waitForExit(timeout: 60)
        #expect(status != nil && status != 0, "destination: \(pair.destination.errors.text)")
        #expect(!pair.destination.output.text.contains("count "), "the destination ran the guest")
        #expect(pair.destination.errors.text.contains("skiff: error:"), "\(pair.destination.errors.text)")
    }

    static let start: [UInt8] = [1, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0]
    static let goodStart: [UInt8] = start + Array("SKIFFMIG".utf8) + [1, 0, 0, 0]
    static let malformed: [(String, [UInt8], String)] = [
        ("garbage", [UInt8](repeating: 0xAB, count: 64), "unknown message kind"),
        ("wrong magic", start + Array("NOTSKIFF".utf8) + [1, 0, 0, 0], "does not start with a Skiff migration header"),
        ("newer version", start + Array("SKIFFMIG".utf8) + [9, 0, 0, 0], "migration protocol version 9"),
        ("huge config", goodStart + [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40], "at most"),
        ("truncated", start + Array("SKIF".utf8), "closed the connection"),
        ("bad config", goodStart + [2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8), "does not decode"),
    ]

    @Test(arguments: malformed)
    func aMalformedStreamEndsTheDestinationWithAClearError(name: String, bytes: [UInt8], message: String) throws {
        let port = MigrationPair.freePort()
        let destination = try BackgroundVM(["run", "--incoming", "tcp:127.0.0.1:\(port)", "--insecure-migration",
                                            "--log-level", "info"])
        try #require(destination.errors.waitFor("waiting for an incoming VM", timeout: 60))
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        shutdown(fd, Int32(SHUT_WR))
        #expect(destination.waitForExit(timeout: 30) == 1, "\(name): \(destination.errors.text)")
        #expect(destination.errors.text.contains(message), "\(name): \(destination.errors.text)")
        #expect(destination.output.text.isEmpty)
    }
}
