/// The value tree of Skiff's binary state encoding (`state.bin` version 2 and
/// the migration stream's state message): JSON's data model, typed, with byte
/// arrays as one blob, so `Codable` state round-trips without text.
///
/// Wire form, each value a tag byte then its payload (varints are unsigned
/// LEB128, at most 10 bytes):
///
///     0 nil   1 false   2 true
///     3 signed integer: zigzag varint      4 unsigned integer: varint
///     5 Double: 8 bytes little-endian      6 String: varint length, UTF-8
///     7 bytes: varint length, raw          8 array: varint count, values
///     9 keyed: varint count, (key: varint length + UTF-8, value) pairs
///
/// Keys are kept (not positional), so a decoder with added optional fields
/// reads an older value, as with JSON.
enum BinaryNode: Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case bytes([UInt8])
    case array([BinaryNode])
    case keyed([String: BinaryNode])

    enum Tag: UInt8 {
        case null = 0, `false`, `true`, int, uint, double, string, bytes, array, keyed
    }

    var kindName: String {
        switch self {
        case .null: return "nil"
        case .bool: return "a boolean"
        case .int, .uint: return "an integer"
        case .double: return "a floating-point number"
        case .string: return "a string"
        case .bytes: return "bytes"
        case .array: return "an array"
        case .keyed: return "a keyed container"
        }
    }
}

/// Appends wire bytes.
struct BinaryWriter {
    var bytes: [UInt8] = []

    mutating func tag(_ tag: BinaryNode.Tag) { bytes.append(tag.rawValue) }

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    mutating func double(_ d: Double) {
        withUnsafeBytes(of: d.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Parses wire bytes into a `BinaryNode` tree. Every count and length is
/// checked against the bytes that are left before anything is allocated, and
/// nesting is bounded, so hostile input ends in `BinaryCodingError`, never a
/// trap or an allocation its size does not justify.
struct BinaryReader {
    static let maxDepth = 64
    private let bytes: UnsafeRawBufferPointer
    private var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// The one value that must make up all of `bytes`.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> BinaryNode {
        var reader = BinaryReader(bytes)
        let node = try reader.value(depth: 0)
        guard reader.offset == bytes.count else {
            throw BinaryCodingError("\(bytes.count - reader.offset) bytes left after the value")
        }
        return node
    }

    private var left: Int { bytes.count - offset }

    private mutating func byte() throws -> UInt8 {
        guard offset < bytes.count else { throw BinaryCodingError("truncated at byte \(offset)") }
        defer { offset += 1 }
        return bytes[offset]
    }

    private mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        for shift in stride(from: 0, to: 70, by: 7) {
            let b = try byte()
            guard shift < 63 || b <= 1 else { throw BinaryCodingError("varint overflows 64 bits at byte \(offset)") }
            result |= UInt64(b & 0x7f) << UInt64(shift)
            if b & 0x80 == 0 {
                // The shortest form only: a trailing zero group would be a
                // second spelling of the same number.
                guard b != 0 || shift == 0 else { throw BinaryCodingError("varint not in its shortest form at byte \(offset)") }
                return result
            }
        }
        throw BinaryCodingError("varint longer than 10 bytes at byte \(offset)")
    }

    /// A length or count of things each taking at least `unit` bytes.
    private mutating func count(unit: Int) throws -> Int {
        let n = try varint()
        guard n <= UInt64(left / unit) else {
            throw BinaryCodingError("count \(n) at byte \(offset) exceeds the \(left) bytes left")
        }
        return Int(n)
    }

    private mutating func take(_ n: Int) -> UnsafeRawBufferPointer {
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
    }

    private mutating func string() throws -> String {
        let raw = take(try count(unit: 1))
        guard let s = String(validating: raw.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw BinaryCodingError("invalid UTF-8 in a string before byte \(offset)")
        }
        return s
    }

    private mutating func value(depth: Int) throws -> BinaryNode {
        guard depth <= Self.maxDepth else { throw BinaryCodingError("nested deeper than \(Self.maxDepth)") }
        let at = offset
        guard let tag = BinaryNode.Tag(rawValue: try byte()) else {
            throw BinaryCodingError("unknown tag \(bytes[at]) at byte \(at)")
        }
        switch tag {
        case .null: return .null
        case .false: return .bool(false)
        case .true: return .bool(true)
        case .int:
            let z = try varint()
            return .int(Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1))))
        case .uint: return .uint(try varint())
        case .double:
            guard left >= 8 else { throw BinaryCodingError("truncated Double at byte \(offset)") }
            return .double(Double(bitPattern: UInt64(littleEndian: take(8).loadUnaligned(as: UInt64.self))))
        case .string: return .string(try string())
        case .bytes: return .bytes(Array(take(try count(unit: 1))))
        case .array:
            let n = try count(unit: 1)
            var items: [BinaryNode] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try value(depth: depth + 1)) }
            return .array(items)
        case .keyed:
            let n = try count(unit: 2)
            var fields: [String: BinaryNode] = [:]
            fields.reserveCapacity(n)
            for _ in 0..<n {
                let key = try string()
                guard fields.updateValue(try value(depth: depth + 1), forKey: key) == nil else {
                    throw BinaryCodingError("key \"\(key)\" appears twice before byte \(offset)")
                }
            }
            return .keyed(fields)
        }
    }
}

/// Malformed binary state: what is wrong and where.
public struct BinaryCodingError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}
