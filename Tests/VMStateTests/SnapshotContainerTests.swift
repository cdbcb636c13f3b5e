import Foundation
import Testing
@testable import VMState

/// The container written and read back: contents, determinism, checksums, and
/// what the writer refuses.
@Suite struct SnapshotContainerTests {
    @Test func crc64MatchesThePublishedCheckValue() {
        #expect(CRC64.checksum(Array("123456789".utf8)) == 0x995D_C9BB_DF19_39FA)
        #expect(CRC64.checksum([UInt8]()) == 0)
        // Slicing-by-8 must agree with itself however the input is split.
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let whole = CRC64.checksum(data)
        for split in [1, 7, 8, 9, 63, 500, 999] {
            var c = CRC64()
            c.update(Array(data[..<split]))
            c.update(Array(data[split...]))
            #expect(c.checksum == whole, "split at \(split)")
        }
    }

    @Test func roundTripsStateManifestAndMemory() throws {
        let dir = TemporaryDirectory()
        let snap = dir.child("snap")
        let written = try Fixtures.writeSnapshot(to: snap)
        let read = try SnapshotReader(directory: snap).read(verifyMemoryChecksum: true)
        #expect(read.state == Fixtures.state())
        #expect(read.manifest == written)
        #expect(read.manifest.machine == Fixtures.machine())
        #expect(read.manifest.formatVersion == SnapshotManifest.currentVersion)
        #expect(read.manifest.createdAt == "2027-01-15T08:00:00Z")
        #expect(try Data(contentsOf: read.memoryFileURL) == Data(Fixtures.memory()))
        let memoryEntry = try #require(read.manifest.file(.memory))
        #expect(memoryEntry.crc64 == CRC64.hex(CRC64.checksum(Fixtures.memory())))
        // The manifest is for people too: indented JSON naming the kernel.
        let text = try String(contentsOf: snap.appendingPathComponent("manifest.json"), encoding: .utf8)
        #expect(text.contains("\"kernelPath\" : \"/boot/vmlinux\""))
        #expect(!FileManager.default.fileExists(atPath: snap.appendingPathComponent("manifest.json.tmp").path))
    }

    @Test func stateEncodingIsDeterministicAndSmall() throws {
        let a = try StateFile.encode(Fixtures.state(vcpus: 4))
        let b = try StateFile.encode(Fixtures.state(vcpus: 4))
        #expect(a == b)
        // 4 vCPUs with a 4 KiB XSAVE area, 1 KiB LAPIC and 416-byte FPU each.
        #expect(a.count < 160_000, "state.bin is \(a.count) bytes")
        #expect(try StateFile.decode(a, name: "state.bin") == Fixtures.state(vcpus: 4))
    }

    @Test func memoryChecksumIsOptionalOnBothSides() throws {
        let dir = TemporaryDirectory()
        let snap = dir.child("snap")
        let writer = try SnapshotWriter(directory: snap)
        try Data(Fixtures.memory()).write(to: writer.memoryFileURL)
        let manifest = try writer.finish(state: Fixtures.state(), machine: Fixtures.machine(), skiffVersion: "t",
                                         checksumMemory: false)
        #expect(manifest.file(.memory)?.crc64 == nil)
        #expect(try SnapshotReader(directory: snap).read(verifyMemoryChecksum: true).state == Fixtures.state())
    }

    @Test func writerRefusesANonEmptyDirectory() throws {
        let dir = TemporaryDirectory()
        try Data([1]).write(to: dir.child("something"))
        #expect(throws: SnapshotError.self) { try SnapshotWriter(directory: dir.url) }
    }

    @Test func writerRefusesAMemoryFileThatDoesNotMatchTheMap() throws {
        let dir = TemporaryDirectory()
        let writer = try SnapshotWriter(directory: dir.child("snap"))
        try Data(Fixtures.memory(size: 4096)).write(to: writer.memoryFileURL)
        let error = try #require(throws: SnapshotError.self) {
            try writer.finish(state: Fixtures.state(), machine: Fixtures.machine(), skiffVersion: "t")
        }
        #expect(error.kind == .sizeMismatch)
    }

    @Test func writerRefusesAStateThatDoesNotMatchTheConfig() throws {
        let dir = TemporaryDirectory()
        let writer = try SnapshotWriter(directory: dir.child("snap"))
        try Data(Fixtures.memory()).write(to: writer.memoryFileURL)
        let error = try #require(throws: SnapshotError.self) {
            try writer.finish(state: Fixtures.state(vcpus: 3), machine: Fixtures.machine(cpus: 2), skiffVersion: "t")
        }
        #expect(error.kind == .sizeMismatch)
        #expect(!FileManager.default.fileExists(atPath: dir.child("snap/manifest.json").path))
    }

    @Test func unfinishedSnapshotWithoutManifestIsRefused() throws {
        let dir = TemporaryDirectory()
        let writer = try SnapshotWriter(directory: dir.child("snap"))
        try Data(Fixtures.memory()).write(to: writer.memoryFileURL)
        let error = try #require(throws: SnapshotError.self) { try SnapshotReader(directory: dir.child("snap")).read() }
        #expect(error.kind == .missingFile)
    }
}
