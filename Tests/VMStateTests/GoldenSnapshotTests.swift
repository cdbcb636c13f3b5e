import Foundation
import Testing
@testable import VMState

/// A snapshot written by format version 1, kept in the repository: every later
/// Skiff must still read it (the rule is "a build reads its own version and the
/// one before"). Regenerate only when adding a new version's golden directory:
/// `SKIFF_WRITE_GOLDEN=1 swift test --filter GoldenSnapshotTests`. It was
/// written from `Fixtures`; change those and this test says so.
@Suite struct GoldenSnapshotTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Golden/v1")

    static var machine: SnapshotMachineConfig {
        var m = Fixtures.machine(cpus: 1)
        m.memorySize = 8192
        m.memoryMap = [.init(guestAddress: 0, size: 4096, fileOffset: 0),
                       .init(guestAddress: 0x10_0000, size: 4096, fileOffset: 4096)]
        return m
    }

    @Test func version1SnapshotStillReads() throws {
        if ProcessInfo.processInfo.environment["SKIFF_WRITE_GOLDEN"] == "1" {
            try? FileManager.default.removeItem(at: Self.directory)
            try FileManager.default.createDirectory(at: Self.directory.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Fixtures.writeSnapshot(to: Self.directory, state: Fixtures.state(vcpus: 1), machine: Self.machine)
        }
        let snapshot = try SnapshotReader(directory: Self.directory).read(verifyMemoryChecksum: true)
        #expect(snapshot.manifest.formatVersion == 1)
        #expect(snapshot.manifest.machine == Self.machine)
        // Written with device state version 1 (its network card has two queues, no `net`).
        var expected = Fixtures.state(vcpus: 1)
        expected.devices.formatVersion = 1
        #expect(snapshot.state == expected)
        #expect(try Data(contentsOf: snapshot.memoryFileURL) == Data(Fixtures.memory(size: 8192)))
    }
}
