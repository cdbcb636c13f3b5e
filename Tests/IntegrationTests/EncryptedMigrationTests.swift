import Foundation
import Testing

/// Migration with `--migration-key` on both ends, through real `skiff`
/// binaries: the count goes on unbroken; a destination with another key is
/// refused before any guest byte leaves the source (whose guest runs on); and
/// a relay recording the wire sees no guest memory with a key, while the same
/// recording of an `--insecure-migration` run does show it (the control that
/// lets the test fail).
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"), .serialized)
struct EncryptedMigrationTests {
    /// Bytes the count guest keeps in RAM: the state page's magic word and the
    /// start line's text in the firmware image.
    static let markers = [Array("SKIFFCNT".utf8), Array("count: start every=".utf8)]

    /// A fresh key file made by `skiff migration-key` in `dir`.
    static func makeKey(_ dir: URL, _ name: String) throws -> String {
        let path = dir.appendingPathComponent(name).path
        let made = try SkiffProcess.run(["migration-key", path], timeout: 30)
        try #require(made.status == 0, "skiff migration-key: \(made.stderr)")
        return path
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count, let first = needle.first else { return false }
        var i = 0
        while i <= haystack.count - needle.count {
            guard let at = haystack[i...(haystack.count - needle.count)].firstIndex(of: first) else { return false }
            if haystack[at..<(at + needle.count)].elementsEqual(needle) { return true }
            i = at + 1
        }
        return false
    }

    /// A migration of `pair` through a recording relay; what the source sent.
    private func migrateRecorded(_ pair: MigrationPair) throws -> (SkiffRun, [UInt8]) {
        let relay = try CuttingRelay(to: pair.port, recording: true)
        let run = try pair.migrate(to: relay.port)
        #expect(relay.waitUntilFinished(timeout: 30), "the relayed connection did not end")
        return (run, relay.recordedBytes.bytes)
    }

    /// The count sequence goes on at the destination, unbroken; the destination is stopped.
    private func expectContinued(_ pair: MigrationPair, _ run: SkiffRun, _ what: String) {
        #expect(run.status == 0, "\(what): skiff migrate: \(run.stderr)")
        #expect(run.stdout.hasPrefix("migrated: total "), "\(what): \(run.stdout)")
        #expect(pair.source.waitForExit(timeout: 30) == 0, "\(what): source: \(pair.source.errors.text)")
        #expect(pair.source.errors.waitFor("skiff: migrated", timeout: 10), "\(what): \(pair.source.errors.text)")
        let before = pair.source.output.text
        #expect(pair.destination.output.waitFor("count \(pair.every * UInt64(MigrationPair.counts(before).count + 3))\n",
                                                timeout: 60), "\(what): destination: \(pair.destination.errors.text)")
        let counts = MigrationPair.counts(before + pair.destination.output.text)
        #expect(pair.unbroken(counts), "\(what): not one unbroken sequence: \(counts.prefix(40))")
        kill(pair.destination.process.processIdentifier, SIGTERM)
        _ = pair.destination.waitForExit(timeout: 30)
    }

    @Test func countMigratesWithAKeyAndTheWireShowsNoGuestMemory() throws {
        let dir = try Shell.temporaryDirectory("enc-mig")
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = try Self.makeKey(dir, "migration.key")
        let pair = try MigrationPair(name: "enc-mig", security: ["--migration-key", key])
        try #require(pair.waitUntilReady(), "not ready: \(pair.source.errors.text) \(pair.destination.errors.text)")
        let (run, wire) = try migrateRecorded(pair)
        expectContinued(pair, run, "encrypted")
        // Memory went over the wire (the guest's image at least), all of it ciphertext.
        #expect(wire.count > 64 << 10, "only \(wire.count) bytes on the wire")
        for marker in Self.markers {
            #expect(!Self.contains(wire, marker), "\(String(decoding: marker, as: UTF8.self)) is readable on the wire")
        }
        #expect(!Self.contains(wire, Array("SKIFFMIG".utf8)), "the protocol header is readable on the wire")
    }

    /// The control: the same recording of a plain-TCP migration shows the markers,
    /// so the check above would catch a stream that is not encrypted.
    @Test func theWireOfAnInsecureMigrationShowsGuestMemory() throws {
        let pair = try MigrationPair(name: "plain-mig")
        try #require(pair.waitUntilReady(), "not ready: \(pair.source.errors.text)")
        let (run, wire) = try migrateRecorded(pair)
        expectContinued(pair, run, "insecure")
        for marker in Self.markers {
            #expect(Self.contains(wire, marker), "\(String(decoding: marker, as: UTF8.self)) not seen in \(wire.count) bytes")
        }
    }

    /// A destination that stops answering mid-transfer (SIGSTOP) ends an encrypted
    /// migration after the 30 s stream limit, as it does a plain one: the source's
    /// guest runs on. (The encrypted stream once waited forever.)
    @Test func aDestinationThatFallsSilentTimesTheEncryptedStreamOut() throws {
        let dir = try Shell.temporaryDirectory("enc-silent")
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = try Self.makeKey(dir, "migration.key")
        let pair = try MigrationPair(name: "enc-silent", every: 20_000_000, extra: "count.dirty=32",
                                     security: ["--migration-key", key])
        try #require(pair.waitUntilReady(counts: 2), "not ready: \(pair.source.errors.text)")
        let destination = pair.destination.process.processIdentifier
        let stopper = Thread {
            _ = pair.destination.errors.waitFor("VM built", timeout: 60)
            kill(destination, SIGSTOP)
        }
        stopper.start()
        let run = try pair.migrate(timeout: 120)
        defer { kill(destination, SIGKILL); kill(destination, SIGCONT); _ = pair.destination.waitForExit(timeout: 30) }
        #expect(run.status != 0, "the migration claimed success: \(run.stdout)")
        #expect(run.stderr.contains("nothing for 30"), "\(run.stderr)")
        #expect(run.seconds < 90, "took \(run.seconds) s")
        let n = pair.source.counts.count
        #expect(pair.source.waitForCounts(n + 3, timeout: 60), "the source guest stopped: \(pair.source.errors.text.suffix(400))")
        #expect(pair.unbroken(pair.source.counts))
        #expect(try SkiffProcess.run(["shutdown", "--api-socket", pair.socket], timeout: 30).status == 0)
        #expect(pair.source.waitForExit(timeout: 30) == 0)
    }

    @Test func aDestinationWithAnotherKeyIsRefusedBeforeAnyGuestByte() throws {
        let dir = try Shell.temporaryDirectory("enc-wrong")
        defer { try? FileManager.default.removeItem(at: dir) }
        let sourceKey = try Self.makeKey(dir, "a.key")
        let destinationKey = try Self.makeKey(dir, "b.key")
        let pair = try MigrationPair(name: "enc-wrong", security: ["--migration-key", sourceKey],
                                     destinationSecurity: ["--migration-key", destinationKey])
        try #require(pair.waitUntilReady(), "not ready: \(pair.source.errors.text) \(pair.destination.errors.text)")
        let (run, wire) = try migrateRecorded(pair)

        #expect(run.status != 0, "the migration claimed success: \(run.stdout)")
        #expect(run.stderr.contains("cannot migrate"), "\(run.stderr)")
        #expect(run.stderr.contains("same key on both hosts"), "\(run.stderr)")
        // Only the handshake's first message left the source (ephemeral key and tag: 48 bytes
        // plus framing): no guest page, no config.
        #expect(wire.count <= 128, "\(wire.count) bytes left the source")

        #expect(pair.destination.waitForExit(timeout: 30) == 1, "destination: \(pair.destination.errors.text)")
        #expect(pair.destination.errors.text.contains("skiff: error:"), "\(pair.destination.errors.text)")
        #expect(pair.destination.errors.text.contains("same key on both hosts"), "\(pair.destination.errors.text)")
        #expect(pair.destination.output.text.isEmpty)

        // The source never paused: its count goes on without a gap, and it still runs.
        let n = pair.source.counts.count
        #expect(pair.source.waitForCounts(n + 3, timeout: 60), "the source guest stopped: \(pair.source.errors.text)")
        #expect(pair.unbroken(pair.source.counts), "\(pair.source.counts.suffix(10))")
        #expect((try? APILifecycleTests.state(pair.socket)) == "Running")
        #expect(try SkiffProcess.run(["shutdown", "--api-socket", pair.socket], timeout: 30).status == 0)
        #expect(pair.source.waitForExit(timeout: 30) == 0)
    }
}
