import Foundation
import PropertyBased
import Testing
@testable import VMState

/// Random damage to a valid snapshot: the reader either accepts it (a change
/// that means nothing, such as JSON whitespace) or throws a `SnapshotError`.
/// It never traps and never throws anything else.
@Suite struct SnapshotFuzzTests {
    enum Damage: Sendable, CustomStringConvertible {
        /// XOR a byte of state.bin / manifest.json.
        case flipState(offset: Int, mask: UInt8)
        case flipManifest(offset: Int, mask: UInt8)
        case truncateState(length: Int)
        case truncateManifest(length: Int)
        /// XOR a byte of the JSON inside state.bin and re-frame it with correct
        /// checksums everywhere, so the damage reaches the decoder and validation.
        case flipPayloadResealed(offset: Int, mask: UInt8)

        var description: String {
            switch self {
            case .flipState(let o, let m): return "flip state.bin[\(o)] ^ \(m)"
            case .flipManifest(let o, let m): return "flip manifest.json[\(o)] ^ \(m)"
            case .truncateState(let l): return "truncate state.bin to \(l)"
            case .truncateManifest(let l): return "truncate manifest.json to \(l)"
            case .flipPayloadResealed(let o, let m): return "flip payload[\(o)] ^ \(m), resealed"
            }
        }
    }

    static let damage = zip(Gen.int(in: 0...4), Gen.int(in: 0...1_000_000), Gen.int(in: 1...255))
        .map { kind, position, mask -> Damage in
            let m = UInt8(mask)
            switch kind {
            case 0: return .flipState(offset: position, mask: m)
            case 1: return .flipManifest(offset: position, mask: m)
            case 2: return .truncateState(length: position)
            case 3: return .truncateManifest(length: position)
            default: return .flipPayloadResealed(offset: position, mask: m)
            }
        }

    @Test func damagedSnapshotsNeverTrap() async throws {
        let temp = TemporaryDirectory()
        let source = temp.child("valid")
        try Fixtures.writeSnapshot(to: source)
        let state = Array(try Data(contentsOf: source.appendingPathComponent("state.bin")))
        let manifest = Array(try Data(contentsOf: source.appendingPathComponent("manifest.json")))
        let memory = try Data(contentsOf: source.appendingPathComponent("memory"))

        await propertyCheck(count: 300, input: Self.damage) { damage in
            let dir = temp.child(UUID().uuidString)
            defer { try? FileManager.default.removeItem(at: dir) }
            var s = state, m = manifest
            switch damage {
            case .flipState(let o, let mask): s[o % s.count] ^= mask
            case .flipManifest(let o, let mask): m[o % m.count] ^= mask
            case .truncateState(let l): s = Array(s.prefix(l % s.count))
            case .truncateManifest(let l): m = Array(m.prefix(l % m.count))
            case .flipPayloadResealed(let o, let mask):
                var payload = Array(s[StateFile.headerSize..<(s.count - StateFile.trailerSize)])
                payload[o % payload.count] ^= mask
                s = StateFile.frame(payload: payload)
                m = Self.manifest(m, listingState: s)
            }
            do {
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
                try Data(s).write(to: dir.appendingPathComponent("state.bin"))
                try Data(m).write(to: dir.appendingPathComponent("manifest.json"))
                try memory.write(to: dir.appendingPathComponent("memory"))
            } catch {
                Issue.record("setting up \(damage): \(error)")
                return
            }
            do {
                _ = try SnapshotReader(directory: dir).read(verifyMemoryChecksum: true)
            } catch is SnapshotError {
                // The expected outcome for nearly every case.
            } catch {
                Issue.record("\(damage) threw a non-snapshot error: \(error)")
            }
        }
    }

    /// The manifest with the state file's size and CRC-64 updated.
    static func manifest(_ bytes: [UInt8], listingState state: [UInt8]) -> [UInt8] {
        guard var json = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
              var files = json["files"] as? [[String: Any]] else { return bytes }
        for i in files.indices where files[i]["role"] as? String == "state" {
            files[i]["size"] = state.count
            files[i]["crc64"] = CRC64.hex(CRC64.checksum(state))
        }
        json["files"] = files
        return (try? JSONSerialization.data(withJSONObject: json)).map(Array.init) ?? bytes
    }
}
