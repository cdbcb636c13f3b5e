import FoundationEssentials

/// The framing of `state.bin`:
///
///     offset  size  field
///          0     8  magic "SKIFSTAT"
///          8     4  version, little-endian (2)
///         12     4  reserved, zero
///         16     8  payload length n, little-endian
///         24     n  payload: MachineState (version 2: binary, see BinaryNode;
///                   version 1: JSON, keys sorted)
///       24+n     8  CRC-64/XZ of bytes [0, 24+n), little-endian
///
/// Version 2 replaced JSON with the binary encoding of the same `Codable`
/// values: decoding the JSON was most of a restore's time (and the state is
/// encoded and decoded again in a migration's downtime). Both are
/// deterministic and fail cleanly on hostile input; version 1 files still read.
/// `skiff` has no dump command yet; the manifest stays JSON for people.
enum StateFile {
    static let magic: [UInt8] = Array("SKIFSTAT".utf8)
    static let version: UInt32 = 2
    static let oldestReadableVersion: UInt32 = 1
    static let headerSize = 24
    static let trailerSize = 8
    /// Far above any real state (a 1024-vCPU machine is a few tens of MiB of JSON).
    static let maxPayload = 64 << 20

    static func encode(_ state: MachineState) throws -> [UInt8] {
        let payload: [UInt8]
        do {
            payload = try BinaryStateEncoder().encode(state)
        } catch {
            throw SnapshotError(.invalidState, "cannot encode the machine state: \(error)")
        }
        guard payload.count <= maxPayload else {
            throw SnapshotError(.limitExceeded, "machine state is \(payload.count) bytes (at most \(maxPayload))")
        }
        return frame(payload: payload)
    }

    /// Header, payload and checksum; `version` is a parameter so tests can write other versions.
    static func frame(payload: [UInt8], version: UInt32 = StateFile.version) -> [UInt8] {
        var out = magic
        out.reserveCapacity(headerSize + payload.count + trailerSize)
        append(&out, UInt64(version))  // version (low 4 bytes) and the reserved word
        append(&out, UInt64(payload.count))
        out += payload
        append(&out, CRC64.checksum(out))
        return out
    }

    /// Checks the framing, then decodes and validates the state.
    static func decode(_ bytes: [UInt8], name: String) throws -> MachineState {
        guard bytes.count >= headerSize + trailerSize else {
            if bytes.count >= magic.count && Array(bytes.prefix(magic.count)) != magic {
                throw SnapshotError(.badMagic, "\(name) does not start with the Skiff state magic")
            }
            throw SnapshotError(.truncated, "\(name) is \(bytes.count) bytes, shorter than its header")
        }
        guard Array(bytes[0..<8]) == magic else {
            throw SnapshotError(.badMagic, "\(name) does not start with the Skiff state magic")
        }
        let version = UInt32(truncatingIfNeeded: load(bytes, at: 8))
        let reserved = UInt32(truncatingIfNeeded: load(bytes, at: 8) >> 32)
        guard (oldestReadableVersion...StateFile.version).contains(version) else {
            throw SnapshotError(.unsupportedVersion, "\(name) has state version \(version); this build reads "
                + "\(oldestReadableVersion)...\(StateFile.version)")
        }
        let length = load(bytes, at: 16)
        guard length <= UInt64(maxPayload) else {
            throw SnapshotError(.limitExceeded, "\(name) claims a \(length)-byte state (at most \(maxPayload))")
        }
        let expected = headerSize + Int(length) + trailerSize
        guard bytes.count >= expected else {
            throw SnapshotError(.truncated, "\(name) is \(bytes.count) bytes, its header says \(expected)")
        }
        guard bytes.count == expected else {
            throw SnapshotError(.sizeMismatch, "\(name) is \(bytes.count) bytes, its header says \(expected)")
        }
        let stored = load(bytes, at: expected - trailerSize)
        let actual = bytes.withUnsafeBytes { raw -> UInt64 in
            var c = CRC64()
            c.update(UnsafeRawBufferPointer(rebasing: raw[0..<(expected - trailerSize)]))
            return c.checksum
        }
        guard stored == actual else {
            throw SnapshotError(.checksumMismatch, "\(name): stored CRC-64 \(CRC64.hex(stored)), computed \(CRC64.hex(actual))")
        }
        guard reserved == 0 else { throw SnapshotError(.malformed, "\(name): reserved header field is \(reserved)") }
        let state: MachineState
        let payload = bytes[headerSize..<(headerSize + Int(length))]
        do {
            if version == 1 {
                state = try JSONDecoder().decode(MachineState.self, from: Data(payload))
            } else {
                state = try payload.withUnsafeBytes { try BinaryStateDecoder().decode(MachineState.self, from: $0) }
            }
        } catch {
            throw SnapshotError(.malformed, "\(name) does not decode: \(error)")
        }
        try state.validate()
        return state
    }

    private static func append(_ out: inout [UInt8], _ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { out += $0 }
    }

    private static func load(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        // SAFETY: callers check offset + 8 <= bytes.count.
        bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    }
}
