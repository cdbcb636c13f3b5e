import Foundation
import Testing

/// Live migration between two `skiff` processes on loopback: the count
/// sequence goes on at the destination with no gap and no repeat, the source
/// exits 0 ("migrated") only after the destination runs the VM, and a guest
/// that rewrites memory fast converges (auto-converge) with its memory intact.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"), .serialized)
struct MigrationTests {
    @Test(arguments: [1, 2])
    func countContinuesOnTheDestination(cpus: Int) throws {
        let pair = try MigrationPair(name: "migrate-\(cpus)", cpus: cpus)
        try #require(pair.waitUntilReady(), "not ready: \(pair.source.errors.text) \(pair.destination.errors.text)")
        let run = try pair.migrate()
        #expect(run.status == 0, "skiff migrate: \(run.stderr)")
        #expect(run.stdout.hasPrefix("migrated: total "), "\(run.stdout)")
        #expect(pair.source.waitForExit(timeout: 30) == 0, "source: \(pair.source.errors.text)")
        #expect(pair.source.errors.text.contains("skiff: migrated"))
        let before = pair.source.output.text
        #expect(pair.destination.output.waitFor("count \(pair.every * UInt64(MigrationPair.counts(before).count + 5))\n",
                                                timeout: 60), "destination: \(pair.destination.errors.text)")
        let joined = before + pair.destination.output.text
        let counts = MigrationPair.counts(joined)
        #expect(pair.unbroken(counts), "not one unbroken sequence: \(counts.prefix(40))")
        kill(pair.destination.process.processIdentifier, SIGTERM)
        #expect(pair.destination.waitForExit(timeout: 30) == 128 + SIGTERM)
    }

    @Test func aGuestThatDirtiesMemoryFastConvergesWithItsMemoryIntact() throws {
        // 32 MiB rewritten round-robin, one page per 64 increments: faster than the link
        // until auto-converge throttles it.
        let pair = try MigrationPair(name: "migrate-dirty", every: 20_000_000, extra: "count.dirty=32")
        try #require(pair.waitUntilReady(counts: 2), "not ready: \(pair.source.errors.text)")
        let run = try pair.migrate()
        #expect(run.status == 0, "skiff migrate: \(run.stderr)")
        #expect(!run.stdout.contains("did not converge"), "\(run.stdout)")
        Self.expectIntactOnTheDestination(pair, run, lines: 3, label: "dirtying guest")
    }

    @Test func aGuestsWrittenMemoryArrivesWhole() throws {
        // 96 MiB written once at start (a word at each end of every page): all of it must
        // cross once and land intact; the guest checks 4096 of those pages before every
        // line, so six lines on the destination have checked every page.
        let pair = try MigrationPair(name: "migrate-filled", memory: "128M", every: 20_000_000, extra: "count.fill=96")
        try #require(pair.waitUntilReady(counts: 2), "not ready: \(pair.source.errors.text)")
        #expect(pair.source.output.text.contains("count: filled 24576 pages"))
        let run = try pair.migrate()
        #expect(run.status == 0, "skiff migrate: \(run.stderr)")
        Self.expectIntactOnTheDestination(pair, run, lines: 7, label: "filled guest")
    }

    /// After a migration the source exits 0 and the destination prints `lines` more
    /// lines: no memory check FAILED, one unbroken sequence. Then it is stopped.
    static func expectIntactOnTheDestination(_ pair: MigrationPair, _ run: SkiffRun, lines: Int, label: String) {
        #expect(pair.source.waitForExit(timeout: 30) == 0)
        let before = pair.source.output.text
        #expect(pair.destination.output.waitFor("count \(pair.every * UInt64(MigrationPair.counts(before).count + lines))\n",
                                                timeout: 90), "destination: \(pair.destination.output.text.suffix(300))")
        let all = before + pair.destination.output.text
        #expect(!all.contains("FAILED"), "\(all.suffix(400))")
        #expect(pair.unbroken(MigrationPair.counts(all)))
        print("\(label): \(run.stdout)")
        kill(pair.destination.process.processIdentifier, SIGTERM)
        _ = pair.destination.waitForExit(timeout: 30)
    }

    @Test func aPausedVMArrivesPausedAndResumesThere() throws {
        let pair = try MigrationPair(name: "migrate-paused")
        try #require(pair.waitUntilReady())
        #expect(try SkiffProcess.run(["pause", "--api-socket", pair.socket], timeout: 30).status == 0)
        let before = pair.source.output.text
        let run = try pair.migrate()
        #expect(run.status == 0, "skiff migrate: \(run.stderr)")
        #expect(pair.source.waitForExit(timeout: 30) == 0)
        #expect(APILifecycleTests.waitForSocket(pair.destinationSocket, vm: pair.destination))
        #expect(try APILifecycleTests.state(pair.destinationSocket) == "Paused")
        Thread.sleep(forTimeInterval: 0.5)
        #expect(!pair.destination.output.text.contains("count "), "a paused VM ran at the destination")
        #expect(try SkiffProcess.run(["resume", "--api-socket", pair.destinationSocket], timeout: 30).status == 0)
        let next = pair.every * UInt64(MigrationPair.counts(before).count + 3)
        #expect(pair.destination.output.waitFor("count \(next)\n", timeout: 60))
        #expect(pair.unbroken(MigrationPair.counts(before + pair.destination.output.text)))
        #expect(try SkiffProcess.run(["shutdown", "--api-socket", pair.destinationSocket], timeout: 30).status == 0)
        #expect(pair.destination.waitForExit(timeout: 30) == 0)
    }

    /// A host name: `skiff migrate` looks it up and hands the VMM an address. The VMM
    /// itself never looks names up (its seccomp filters forbid what glibc needs): given a
    /// name through the API it answers 400 and the VM runs on. Before, both ended the
    /// source VM with SIGSYS.
    @Test(.enabled(if: Shell.has("curl"), "needs curl"))
    func aHostNameIsLookedUpByTheCommandNotTheVMM() throws {
        let pair = try MigrationPair(name: "migrate-name")
        try #require(pair.waitUntilReady())
        let body = #"{"destination_url": "tcp:localhost:\#(pair.port)", "insecure_migration": true}"#
        let answer = try Shell.run("curl -s -w ' %{http_code}' --unix-socket \(pair.socket) -X PUT -d '\(body)' "
            + "http://localhost/api/v1/vm.send-migration", timeout: 60)
        #expect(answer.hasSuffix(" 400") && answer.contains("names a host"), "\(answer)")
        let seen = MigrationPair.counts(pair.source.output.text).count
        #expect(pair.source.waitForCounts(seen + 3, timeout: 60), "the source VM stopped: \(pair.source.errors.text)")
        let run = try pair.migrate(host: "localhost")
        #expect(run.status == 0, "skiff migrate: \(run.stderr)")
        #expect(pair.source.waitForExit(timeout: 30) == 0, "\(pair.source.errors.text)")
        let before = pair.source.output.text
        #expect(pair.destination.output.waitFor("count \(pair.every * UInt64(MigrationPair.counts(before).count + 3))\n",
                                                timeout: 60), "destination: \(pair.destination.errors.text)")
        #expect(pair.unbroken(MigrationPair.counts(before + pair.destination.output.text)))
        kill(pair.destination.process.processIdentifier, SIGTERM)
        _ = pair.destination.waitForExit(timeout: 30)
    }

    /// `skiff run --api-socket` with no kernel waits; `vm.receive-migration` takes the
    /// VM and answers 204 once it runs there.
    @Test(.enabled(if: Shell.has("curl"), "needs curl"))
    func receiveMigrationThroughTheAPI() throws {
        let pair = try MigrationPair(name: "migrate-api")
        try #require(pair.waitUntilReady())
        let receiverSocket = pair.dir.appendingPathComponent("receiver.sock").path
        let receiver = try BackgroundVM(["run", "--api-socket", receiverSocket])
        try #require(APILifecycleTests.waitForSocket(receiverSocket, vm: receiver))
        #expect(try APILifecycleTests.state(receiverSocket) == "Created")
        let port = MigrationPair.freePort()
        let body = #"{"receiver_url": "tcp:127.0.0.1:\#(port)", "insecure_migration": true}"#
        let answer = Thread.detachedResult {
            try? Shell.run("curl -s -o /dev/null -w '%{http_code}' --unix-socket \(receiverSocket) -X PUT -d '\(body)' "
                + "http://localhost/api/v1/vm.receive-migration", timeout: 120)
        }
        var listening = false
        for _ in 0..<200 where !listening {
            usleep(50_000)
            listening = (try? APILifecycleTests.state(receiverSocket)) == "Receiving"
        }
        #expect(listening)
        // The state changes just before the listen: a refused connect is retried (the source runs on).
        var run = try pair.migrate(to: port)
        for _ in 0..<10 where run.status != 0 && run.stderr.contains("Connection refused") {
            Thread.sleep(forTimeInterval: 0.2)
            run = try pair.migrate(to: port)
        }
        #expect(run.status == 0, "skiff migrate: \(run.stderr)")
        #expect(answer.wait(timeout: 60) == "204")
        #expect(pair.source.waitForExit(timeout: 30) == 0)
        let before = pair.source.output.text
        #expect(receiver.output.waitFor("count \(pair.every * UInt64(MigrationPair.counts(before).count + 3))\n", timeout: 60))
        #expect(pair.unbroken(MigrationPair.counts(before + receiver.output.text)))
        #expect(try SkiffProcess.run(["shutdown", "--api-socket", receiverSocket], timeout: 30).status == 0)
        #expect(receiver.waitForExit(timeout: 30) == 0)
        kill(pair.destination.process.processIdentifier, SIGTERM)
    }

    @Test func bothEndsRefuseWithoutAKeyOrInsecure() throws {
        let receive = try SkiffProcess.run(["run", "--incoming", "tcp:127.0.0.1:1"], timeout: 30)
        #expect(receive.status != 0)
        #expect(receive.stderr.contains("a migration key is needed"), "\(receive.stderr)")
        let send = try SkiffProcess.run(["migrate", "--api-socket", "/nonexistent.sock", "tcp:127.0.0.1:1"], timeout: 30)
        #expect(send.status != 0)
        #expect(send.stderr.contains("a migration key is needed"), "\(send.stderr)")
        let both = try SkiffProcess.run(["run", "--incoming", "tcp:127.0.0.1:1", "--insecure-migration",
                                         "--kernel", "/x"], timeout: 30)
        #expect(both.stderr.contains("--kernel cannot be used with --incoming"), "\(both.stderr)")
        // --net names TAPs only (the MAC is the guest's); --disk a new overlay only (the rest is the source's).
        let mac = try SkiffProcess.run(["run", "--incoming", "tcp:127.0.0.1:1", "--insecure-migration",
                                        "--net", "tap=t0,mac=52:54:00:00:00:01"], timeout: 30)
        #expect(mac.status != 0 && mac.stderr.contains("only tap=NAME"), "\(mac.stderr)")
        let disk = try SkiffProcess.run(["run", "--incoming", "tcp:127.0.0.1:1", "--insecure-migration",
                                         "--disk", "path=/x,readonly=on"], timeout: 30)
        #expect(disk.status != 0 && disk.stderr.contains("only path=NEW.qcow2"), "\(disk.stderr)")
    }
}

/// A value computed on a background thread, waited for with a limit.
// Sound because: `value` is written before `done.signal()` and read only after a successful wait on `done`.
final class DetachedResult<T>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var value: T?
    init(_ body: @escaping @Sendable () -> T) {
        Thread.detachNewThread { [self] in value = body(); done.signal() }
    }
    func wait(timeout: Double) -> T? {
        done.wait(timeout: .now() + timeout) == .success ? value : nil
    }
}

extension Thread {
    static func detachedResult<T>(_ body: @escaping @Sendable () -> T) -> DetachedResult<T> { DetachedResult(body) }
}
