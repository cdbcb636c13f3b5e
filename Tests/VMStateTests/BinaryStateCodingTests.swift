import Foundation
import PropertyBased
import Testing
@testable import VMState

/// The binary state encoding (state.bin version 2): round trips of the real
/// state types and of every shape Codable produces, and hostile bytes that
/// must end in an error, never a trap or an outsized allocation.
@Suite struct BinaryStateCodingTests {
    struct Shapes: Codable, Equatable {
        enum Kind: Codable, Equatable { case none, disk(path: String, size: UInt64), pair(Int8, Int16) }
        var signed: [Int64] = [0, -1, 1, .min, .max, -300]
        var unsigned: [UInt64] = [0, 127, 128, 16383, 16384, .max]
        var small: [UInt8] = [0, 1, 255]
        var words: [UInt16] = [0, .max]
        var flag = true
        var text = "snapshot ✓ \u{0}"
        var real = -1.5
        var single: Float = 0.25
        var missing: Int? = nil
        var present: Int32? = -7
        var kinds: [Kind] = [.none, .disk(path: "/a", size: 1 << 40), .pair(-1, 300)]
        var nested: [[UInt32]] = [[], [1, 2], [.max]]
        var map: [String: Int] = ["a": 1]
        var empty: [String] = []
    }

    @Test func everyShapeRoundTrips() throws {
        let value = Shapes()
        let bytes = try BinaryStateEncoder().encode(value)
        #expect(try BinaryStateDecoder().decode(Shapes.self, from: bytes) == value)
    }

    @Test func machineStateRoundTripsAndIsDeterministic() throws {
        let state = Fixtures.state(vcpus: 4)
        let a = try BinaryStateEncoder().encode(state)
        let b = try BinaryStateEncoder().encode(Fixtures.state(vcpus: 4))
        #expect(a == b)
        #expect(try BinaryStateDecoder().decode(MachineState.self, from: a) == state)
        // The point of the format: much smaller than the JSON of the same state.
        let json = try JSONEncoder().encode(state)
        #expect(a.count * 2 < json.count, "binary \(a.count) bytes, JSON \(json.count)")
    }

    @Test func stateFileWritesVersion2AndReadsVersion1() throws {
        let state = Fixtures.state(vcpus: 2)
        let v2 = try StateFile.encode(state)
        #expect(v2[8] == 2)
        #expect(try StateFile.decode(v2, name: "state.bin") == state)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let v1 = StateFile.frame(payload: Array(try encoder.encode(state)), version: 1)
        #expect(try StateFile.decode(v1, name: "state.bin") == state)
    }

    @Test func integersOutOfRangeAreRefused() throws {
        struct Narrow: Codable { var v: UInt8 }
        struct Wide: Codable { var v: Int }
        #expect(throws: DecodingError.self) {
            try BinaryStateDecoder().decode(Narrow.self, from: try BinaryStateEncoder().encode(Wide(v: 256)))
        }
        #expect(throws: DecodingError.self) {
            try BinaryStateDecoder().decode(Narrow.self, from: try BinaryStateEncoder().encode(Wide(v: -1)))
        }
    }

    /// One spelling per value: a damaged tag or an overlong varint must not
    /// decode to the number the encoder wrote (CI once saw a flipped `uint`
    /// tag read back as the same zero through `int`).
    @Test func everyNumberHasOneEncoding() throws {
        struct Unsigned: Codable, Equatable { var v: UInt8 }
        struct Signed: Codable, Equatable { var v: Int }
        struct Real: Codable, Equatable { var v: Double }
        let unsignedZero = try BinaryStateEncoder().encode(Unsigned(v: 0))
        let signedZero = try BinaryStateEncoder().encode(Signed(v: 0))
        #expect(try BinaryStateDecoder().decode(Unsigned.self, from: unsignedZero) == Unsigned(v: 0))
        #expect(try BinaryStateDecoder().decode(Signed.self, from: signedZero) == Signed(v: 0))
        #expect(throws: DecodingError.self) { try BinaryStateDecoder().decode(Unsigned.self, from: signedZero) }
        #expect(throws: DecodingError.self) { try BinaryStateDecoder().decode(Signed.self, from: unsignedZero) }
        #expect(throws: DecodingError.self) { try BinaryStateDecoder().decode(Real.self, from: signedZero) }
        // 0 and 1 as two-byte varints (a trailing zero group).
        #expect(throws: BinaryCodingError.self) { try BinaryStateDecoder().decode(UInt64.self, from: [4, 0x80, 0x00]) }
        #expect(throws: BinaryCodingError.self) { try BinaryStateDecoder().decode(UInt64.self, from: [4, 0x81, 0x00]) }
        #expect(try BinaryStateDecoder().decode(UInt64.self, from: [4, 0x80, 0x01]) == 128)
        #expect(try BinaryStateDecoder().decode(UInt64.self, from: [4, 0x00]) == 0)
    }

    @Test func hostileWireBytesFailCleanly() {
        let cases: [(String, [UInt8])] = [
            ("empty", []),
            ("unknown tag", [0x42]),
            ("string longer than the input", [6, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
            ("array count of 2^63", [8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            ("varint over 64 bits", [4, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]),
            ("varint longer than 10 bytes", [4] + [UInt8](repeating: 0x80, count: 11) + [0]),
            ("truncated double", [5, 1, 2, 3]),
            ("invalid UTF-8", [6, 2, 0xC3, 0x28]),
            ("duplicate key", [9, 2, 1, 0x61, 0, 1, 0x61, 0]),
            ("trailing bytes", [0, 0]),
            ("nesting bomb", [UInt8](repeating: 8, count: 1) + Array([[UInt8]](repeating: [1, 8], count: 100).joined()) + [0]),
        ]
        for (name, bytes) in cases {
            #expect(throws: BinaryCodingError.self, "\(name)") {
                try BinaryStateDecoder().decode(MachineState.self, from: bytes)
            }
        }
    }

    @Test func everyPrefixOfARealStateFails() throws {
        let bytes = try BinaryStateEncoder().encode(Fixtures.state(vcpus: 1))
        for length in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 2000)) {
            #expect(throws: (any Error).self) { try BinaryStateDecoder().decode(MachineState.self, from: Array(bytes.prefix(length))) }
        }
    }

    static let flips = zip(Gen.int(in: 0...1_000_000), Gen.int(in: 1...255))

    @Test func flippedBytesNeverTrap() async throws {
        let bytes = try BinaryStateEncoder().encode(Fixtures.state(vcpus: 1))
        await propertyCheck(count: 2000, input: Self.flips) { offset, mask in
            var damaged = bytes
            damaged[offset % damaged.count] ^= UInt8(mask)
            // Either an error or a state that differs; never a trap.
            if let state = try? BinaryStateDecoder().decode(MachineState.self, from: damaged) {
                #expect(state != Fixtures.state(vcpus: 1) || damaged == bytes)
            }
        }
    }
}
