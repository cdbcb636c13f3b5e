import Foundation
import Testing
@testable import VMM
@testable import VMState

/// Damaged snapshots given to `skiff run --restore`: each must end with one
/// `skiff: error: …` line and a non-zero status before any vCPU runs (so the
/// guest prints nothing).
@Suite(.enabled(if: FileManager.default.isWritableFile(atPath: "/dev/kvm"), "needs read/write access to /dev/kvm"),
       .serialized)
struct SnapshotHostileRestoreTests {
    static let goodDirectory = SnapshotSupport.temporaryDirectory("good")

    /// One good snapshot of a `count` guest, copied for each damage; removed when the test process exits.
    static let good: URL? = {
        atexit { try? FileManager.default.removeItem(at: SnapshotHostileRestoreTests.goodDirectory) }
        guard let (machine, output, finish) = try? SnapshotRestoreTests.bootCount(cpus: 1, every: 2_000_000) else { return nil }
        defer { try? machine.requestShutdown(); _ = finish() }
        guard output.waitForLines(2) else { return nil }
        let dir = goodDirectory
        return (try? machine.snapshot(to: dir.path)) != nil ? dir : nil
    }()

    enum Damage: String, CaseIterable, CustomStringConvertible {
        case truncateState, flipStateByte, manifestVersion, truncateMemory, missingManifest, memoryMapMoved
        case cpuFeatureTheHostLacks
        var description: String { rawValue }
    }

    static func damaged(_ damage: Damage) throws -> URL {
        let source = try #require(good, "no good snapshot to damage")
        let dir = SnapshotSupport.temporaryDirectory("bad")
        try FileManager.default.copyItem(at: source, to: dir)
        let state = dir.appendingPathComponent("state.bin"), memory = dir.appendingPathComponent("memory")
        let manifest = dir.appendingPathComponent("manifest.json")
        switch damage {
        case .truncateState:
            let bytes = try Data(contentsOf: state)
            try bytes.prefix(bytes.count / 2).write(to: state)
        case .flipStateByte:
            var bytes = try Data(contentsOf: state)
            bytes[bytes.count / 3] ^= 0x10
            try bytes.write(to: state)
        case .manifestVersion:
            let text = try String(contentsOf: manifest, encoding: .utf8)
            try text.replacingOccurrences(of: "\"formatVersion\" : 1", with: "\"formatVersion\" : 99")
                .write(to: manifest, atomically: true, encoding: .utf8)
        case .truncateMemory:
            #expect(truncate(memory.path, 1 << 20) == 0)
        case .missingManifest:
            try FileManager.default.removeItem(at: manifest)
        case .memoryMapMoved:
            let text = try String(contentsOf: manifest, encoding: .utf8)
            try text.replacingOccurrences(of: "\"guestAddress\" : 0", with: "\"guestAddress\" : 4096")
                .write(to: manifest, atomically: true, encoding: .utf8)
        case .cpuFeatureTheHostLacks:
            try giveUnsupportedFeature(state: state, manifest: manifest)
        }
        return dir
    }

    /// A well-formed snapshot (checksums right) whose vCPU was given a CPU
    /// feature bit this host's KVM does not offer, as a snapshot from a newer
    /// host would be.
    static func giveUnsupportedFeature(state: URL, manifest: URL) throws {
        var machine = try StateFile.decode(Array(try Data(contentsOf: state)), name: "state.bin")
        // The saved CPUID is what this host gave the vCPU: a bit it lacks is one this host lacks.
        let i = try #require(machine.vcpus[0].cpuid.firstIndex { $0.function == 7 && $0.index == 0 }, "no CPUID leaf 7")
        let bit = try #require((0..<32).first { machine.vcpus[0].cpuid[i].ebx & (1 << UInt32($0)) == 0 }, "leaf 7 EBX is full")
        machine.vcpus[0].cpuid[i].ebx |= 1 << UInt32(bit)
        let bytes = try StateFile.encode(machine)
        try Data(bytes).write(to: state)
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: manifest)) as? [String: Any])
        var files = try #require(json["files"] as? [[String: Any]])
        let f = try #require(files.firstIndex { $0["name"] as? String == "state.bin" })
        files[f]["size"] = bytes.count
        files[f]["crc64"] = CRC64.hex(CRC64.checksum(bytes))
        json["files"] = files
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys]).write(to: manifest)
    }

    @Test(arguments: Damage.allCases)
    func aDamagedSnapshotFailsCleanly(_ damage: Damage) throws {
        let dir = try Self.damaged(damage)
        defer { try? FileManager.default.removeItem(at: dir) }
        let run = try SnapshotSupport.runSkiff(["run", "--restore", dir.path], timeout: 20)
        #expect(run.status != 0)
        #expect(run.stdout.isEmpty, "the guest ran: \(run.stdout.prefix(200))")
        let lines = run.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("skiff: error: "), "stderr: \(run.stderr)")
        print("\(damage) → status \(run.status): \(run.stderr.prefix(300))")
        if damage == .cpuFeatureTheHostLacks {
            #expect(run.stderr.contains("CPU features this host's KVM does not offer"), "stderr: \(run.stderr)")
        }
    }

    @Test func bootOptionsAreRefusedWithRestore() throws {
        let source = try #require(Self.good)
        let run = try SnapshotSupport.runSkiff(["run", "--restore", source.path, "--kernel", "/etc/hostname"], timeout: 20)
        #expect(run.status != 0)
        #expect(run.stderr.contains("--kernel cannot be used with --restore"), "stderr: \(run.stderr)")
        let clock = try SnapshotSupport.runSkiff(["run", "--restore", source.path, "--restore-clock", "later"], timeout: 20)
        #expect(clock.status != 0 && clock.stderr.contains("--restore-clock"), "stderr: \(clock.stderr)")
        let paused = try SnapshotSupport.runSkiff(["run", "--kernel", "/etc/hostname", "--paused"], timeout: 20)
        #expect(paused.status != 0 && paused.stderr.contains("--paused needs --restore"), "stderr: \(paused.stderr)")
    }
}
