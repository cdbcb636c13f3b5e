import CKVM
import Foundation
import Testing
@testable import VMState

/// Damaged and hostile snapshots: each gives one `SnapshotError` of the right
/// kind, never a trap and never a huge allocation.
@Suite struct HostileSnapshotTests {
    /// A valid snapshot to damage.
    final class Fixture {
        let temp = TemporaryDirectory()
        var dir: URL { temp.child("snap") }
        var stateURL: URL { dir.appendingPathComponent("state.bin") }
        var manifestURL: URL { dir.appendingPathComponent("manifest.json") }
        var memoryURL: URL { dir.appendingPathComponent("memory") }

        init() throws { try Fixtures.writeSnapshot(to: temp.child("snap")) }

        func read(verifyMemory: Bool = false) throws -> SnapshotError.Kind? {
            do {
                _ = try SnapshotReader(directory: dir).read(verifyMemoryChecksum: verifyMemory)
                return nil
            } catch let e as SnapshotError {
                return e.kind
            }
        }

        func editManifest(_ edit: (inout [String: Any]) -> Void) throws {
            var json = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
            edit(&json)
            try JSONSerialization.data(withJSONObject: json).write(to: manifestURL)
        }

        func editMachine(_ edit: (inout [String: Any]) -> Void) throws {
            try editManifest { m in
                var machine = m["machine"] as! [String: Any]
                edit(&machine)
                m["machine"] = machine
            }
        }

        /// Replaces state.bin with `bytes` and lists it in the manifest with a
        /// matching size and checksum, so only what the test broke is broken.
        func replaceState(_ bytes: [UInt8]) throws {
            try Data(bytes).write(to: stateURL)
            try editManifest { m in
                var files = m["files"] as! [[String: Any]]
                for i in files.indices where files[i]["role"] as? String == "state" {
                    files[i]["size"] = bytes.count
                    files[i]["crc64"] = CRC64.hex(CRC64.checksum(bytes))
                }
                m["files"] = files
            }
        }

        /// A state.bin for `state`, framed correctly but not validated.
        func replaceState(with state: MachineState, version: UInt32 = StateFile.version) throws {
            try replaceState(StateFile.frame(payload: try BinaryStateEncoder().encode(state), version: version))
        }

        func stateBytes() throws -> [UInt8] { Array(try Data(contentsOf: stateURL)) }
    }

    @Test func validSnapshotReads() throws {
        #expect(try Fixture().read(verifyMemory: true) == nil)
    }

    /// A disk's frozen copy must be a plain name inside the snapshot, and the
    /// files it references are bounded in number.
    @Test func diskFileNamesAndReferencesAreChecked() throws {
        for (name, expected) in [("../escape.qcow2", SnapshotError.Kind.malformed), ("/etc/passwd", .malformed),
                                 ("..", .malformed), ("", .malformed), ("disk0.qcow2", nil)] {
            let f = try Fixture()
            try f.editMachine { m in
                var devices = m["devices"] as! [[String: Any]]
                for i in devices.indices where devices[i]["kind"] as? String == "virtio-block" {
                    devices[i]["frozenFile"] = name
                    devices[i]["frozenSize"] = 4096
                }
                m["devices"] = devices
            }
            #expect(try f.read() == expected, "frozenFile '\(name)'")
        }
        let f = try Fixture()
        try f.editMachine { m in
            var devices = m["devices"] as! [[String: Any]]
            for i in devices.indices where devices[i]["kind"] as? String == "virtio-block" {
                devices[i]["referencedFiles"] = (0..<33).map { ["path": "/b\($0)", "size": 1, "modifiedNanoseconds": 1] }
            }
            m["devices"] = devices
        }
        #expect(try f.read() == .limitExceeded)
    }

    @Test func truncatedStateFile() throws {
        let f = try Fixture()
        let bytes = try f.stateBytes()
        try Data(bytes.prefix(bytes.count - 100)).write(to: f.stateURL)
        #expect(try f.read() == .truncated)
        try Data(bytes.prefix(10)).write(to: f.stateURL)
        #expect(try f.read() == .truncated)
        try Data().write(to: f.stateURL)
        #expect(try f.read() == .truncated)
    }

    @Test func bitFlipInStatePayload() throws {
        let f = try Fixture()
        var bytes = try f.stateBytes()
        bytes[bytes.count / 2] ^= 0x10
        try Data(bytes).write(to: f.stateURL)
        #expect(try f.read() == .checksumMismatch)
    }

    @Test func stateFileReplacedByAnotherValidOne() throws {
        // Self-consistent, but not the file the manifest lists.
        let f = try Fixture()
        var other = Fixtures.state()
        other.vcpus[0].registers.rax = 1
        try Data(StateFile.frame(payload: try BinaryStateEncoder().encode(other))).write(to: f.stateURL)
        #expect([.checksumMismatch, .sizeMismatch].contains(try f.read()))
    }

    @Test func bitFlipInMemoryIsFoundWhenAsked() throws {
        let f = try Fixture()
        var memory = Array(try Data(contentsOf: f.memoryURL))
        memory[70_000] ^= 1
        try Data(memory).write(to: f.memoryURL)
        #expect(try f.read(verifyMemory: true) == .checksumMismatch)
        #expect(try f.read(verifyMemory: false) == nil)
    }

    @Test func wrongManifestVersion() throws {
        let f = try Fixture()
        try f.editManifest { $0["formatVersion"] = 99 }
        #expect(try f.read() == .unsupportedVersion)
        try f.editManifest { $0["formatVersion"] = 0 }
        #expect(try f.read() == .unsupportedVersion)
    }

    @Test func wrongStateVersion() throws {
        let f = try Fixture()
        try f.replaceState(with: Fixtures.state(), version: 99)
        #expect(try f.read() == .unsupportedVersion)
    }

    @Test func wrongVCPUStateVersion() throws {
        let f = try Fixture()
        var state = Fixtures.state()
        state.vcpus[1].formatVersion = VCPUState.version + 1
        try f.replaceState(with: state)
        #expect(try f.read() == .malformed)
    }

    @Test func wrongMagic() throws {
        let f = try Fixture()
        var bytes = try f.stateBytes()
        bytes[0] = UInt8(ascii: "X")
        try f.replaceState(bytes)
        #expect(try f.read() == .badMagic)

        let g = try Fixture()
        try g.editManifest { $0["format"] = "firecracker" }
        #expect(try g.read() == .badMagic)
    }

    @Test func memoryFileSizeDiffersFromTheMap() throws {
        let f = try Fixture()
        try Data(Fixtures.memory(size: 64 << 10)).write(to: f.memoryURL)
        #expect(try f.read() == .sizeMismatch)
        try FileManager.default.removeItem(at: f.memoryURL)
        #expect(try f.read() == .missingFile)
    }

    @Test func memoryMapDisagreesWithMemorySize() throws {
        let f = try Fixture()
        try f.editMachine { $0["memorySize"] = 256 << 10 }
        #expect(try f.read() == .sizeMismatch)
    }

    @Test func vcpuCountDiffersFromTheConfig() throws {
        let f = try Fixture()
        try f.editMachine { $0["cpuCount"] = 3 }
        #expect(try f.read() == .sizeMismatch)
    }

    @Test func virtioDevicesDifferFromTheConfig() throws {
        let f = try Fixture()
        try f.editMachine { m in
            var devices = m["devices"] as! [[String: Any]]
            devices.removeLast()
            m["devices"] = devices
        }
        #expect(try f.read() == .sizeMismatch)
    }

    @Test func trailingBytesAfterTheState() throws {
        let f = try Fixture()
        try f.replaceState(try f.stateBytes() + [0, 0, 0])
        #expect(try f.read() == .sizeMismatch)
    }

    @Test func absurdStateLengthIsRefusedBeforeReading() throws {
        let f = try Fixture()
        var bytes = try f.stateBytes()
        withUnsafeBytes(of: UInt64(1 << 62).littleEndian) { for i in 0..<8 { bytes[16 + i] = $0[i] } }
        try f.replaceState(bytes)
        #expect(try f.read() == .limitExceeded)
    }

    @Test func absurdCountsInTheManifest() throws {
        let f = try Fixture()
        try f.editMachine { $0["cpuCount"] = 1_000_000_000 }
        #expect(try f.read() == .limitExceeded)

        let g = try Fixture()
        try g.editMachine { m in
            m["memoryMap"] = (0..<1000).map { ["guestAddress": $0 << 12, "size": 4096, "fileOffset": $0 << 12] }
        }
        #expect(try g.read() == .limitExceeded)

        let h = try Fixture()
        try h.editManifest { $0["skiffVersion"] = String(repeating: "x", count: 2 << 20) }
        #expect(try h.read() == .limitExceeded)
    }

    @Test func absurdCountsInTheState() throws {
        let f = try Fixture()
        var state = Fixtures.state()
        state.vcpus[0].msrs = (0..<100_000).map { .init(index: UInt32($0), value: 0) }
        try f.replaceState(with: state)
        #expect(try f.read() == .limitExceeded)

        let g = try Fixture()
        var many = Fixtures.state()
        var small = Fixtures.vcpu(0)
        small.xsave = []  // keeps the 1025-vCPU payload (and the test) small
        many.vcpus = Array(repeating: small, count: StateLimits.vcpus + 1)
        try g.replaceState(with: many)
        #expect(try g.read() == .limitExceeded)
    }

    @Test func impossibleValuesInTheState() throws {
        let f = try Fixture()
        var state = Fixtures.state()
        state.vcpus[1].localAPIC = [1, 2, 3]
        try f.replaceState(with: state)
        #expect(try f.read() == .invalidState)

        let g = try Fixture()
        var swapped = Fixtures.state()
        swapped.vcpus.swapAt(0, 1)
        try g.replaceState(with: swapped)
        #expect(try g.read() == .invalidState)

        let h = try Fixture()
        var pit = Fixtures.state()
        pit.platform.pit.removeLast()
        try h.replaceState(with: pit)
        #expect(try h.read() == .invalidState)

        let i = try Fixture()
        var serial = Fixtures.state()
        serial.devices.serial?.receiveBuffer = [UInt8](repeating: 0, count: 5000)
        try i.replaceState(with: serial)
        #expect(try i.read() == .invalidState)
    }

    @Test func malformedManifest() throws {
        let f = try Fixture()
        try Data("{\"format\": \"skiff-snapshot\", ".utf8).write(to: f.manifestURL)
        #expect(try f.read() == .malformed)
    }

    @Test func fileNamesMustStayInsideTheSnapshot() throws {
        let f = try Fixture()
        try f.editManifest { m in
            var files = m["files"] as! [[String: Any]]
            files[0]["name"] = "../../etc/passwd"
            m["files"] = files
        }
        #expect(try f.read() == .malformed)
    }

    @Test func specialFilesAreRefusedWithoutBlocking() throws {
        let f = try Fixture()
        try FileManager.default.removeItem(at: f.stateURL)
        #expect(mkfifo(f.stateURL.path, 0o600) == 0)
        #expect(try f.read() == .malformed)
        try FileManager.default.removeItem(at: f.stateURL)
        try FileManager.default.createSymbolicLink(atPath: f.stateURL.path, withDestinationPath: "/dev/zero")
        #expect(try f.read() == .malformed)
    }

    @Test func overlappingMemoryRanges() throws {
        let f = try Fixture()
        try f.editMachine { m in
            m["memoryMap"] = [["guestAddress": 0, "size": 128 << 10, "fileOffset": 0],
                              ["guestAddress": 64 << 10, "size": 64 << 10, "fileOffset": 128 << 10]]
        }
        #expect(try f.read() == .malformed)
    }
}
