/// Encodes `Encodable` state into the binary form `BinaryNode` describes.
/// Several times faster than JSON for the machine state (no number text, and
/// XSAVE areas and other `[UInt8]` go as one blob), which matters because the
/// state is written and read while the guest is stopped: in a snapshot and in
/// a live migration's downtime. Deterministic: the same value gives the same
/// bytes (keys in the order the type encodes them).
public struct BinaryStateEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let root = try EncodingBox.encoding(value, codingPath: [])
        var writer = BinaryWriter()
        writer.bytes.reserveCapacity(4096)
        root.write(to: &writer)
        return writer.bytes
    }
}

/// One value being built: set once by a single-value container, or filled by
/// a keyed or unkeyed container (which may hand out nested boxes).
final class EncodingBox {
    enum Content {
        case unset
        case scalar(BinaryNode)
        case array([EncodingBox])
        case keyed([(String, EncodingBox)])
    }
    var content: Content = .unset

    init() {}
    init(_ node: BinaryNode) { content = .scalar(node) }

    /// `value` as a box: `[UInt8]` as one blob, anything else through its `encode(to:)`.
    static func encoding<T: Encodable>(_ value: T, codingPath: [CodingKey]) throws -> EncodingBox {
        // A type comparison, not `as?`: a dynamic cast on every nested value was a
        // large share of encoding the machine state.
        if T.self == [UInt8].self, let bytes = value as? [UInt8] { return EncodingBox(.bytes(bytes)) }
        let box = EncodingBox()
        try value.encode(to: BinaryEncoderImpl(box: box, codingPath: codingPath))
        return box
    }

    func write(to w: inout BinaryWriter) {
        switch content {
        case .unset: w.tag(.keyed); w.varint(0)  // a type that encoded nothing, like JSON's {}
        case .scalar(let node): Self.write(node, to: &w)
        case .array(let items):
            w.tag(.array); w.varint(UInt64(items.count))
            for item in items { item.write(to: &w) }
        case .keyed(let fields):
            w.tag(.keyed); w.varint(UInt64(fields.count))
            for (key, box) in fields { w.string(key); box.write(to: &w) }
        }
    }

    private static func write(_ node: BinaryNode, to w: inout BinaryWriter) {
        switch node {
        case .null: w.tag(.null)
        case .bool(let b): w.tag(b ? .true : .false)
        case .int(let v): w.tag(.int); w.varint(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
        case .uint(let v): w.tag(.uint); w.varint(v)
        case .double(let d): w.tag(.double); w.double(d)
        case .string(let s): w.tag(.string); w.string(s)
        case .bytes(let b): w.tag(.bytes); w.varint(UInt64(b.count)); w.bytes += b
        case .array(let items):
            w.tag(.array); w.varint(UInt64(items.count))
            for item in items { write(item, to: &w) }
        case .keyed(let fields):  // not produced by the encoder; written sorted for determinism
            w.tag(.keyed); w.varint(UInt64(fields.count))
            for key in fields.keys.sorted() { w.string(key); write(fields[key]!, to: &w) }
        }
    }
}

struct BinaryEncoderImpl: Encoder {
    let box: EncodingBox
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .keyed = box.content {} else { box.content = .keyed([]) }
        return KeyedEncodingContainer(KeyedBinaryEncoder<Key>(box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if case .array = box.content {} else { box.content = .array([]) }
        return UnkeyedBinaryEncoder(box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer {
        SingleValueBinaryEncoder(box: box, codingPath: codingPath)
    }
}

/// Integers keep their sign class, so a decoder can check the range exactly.
private func node<T: BinaryInteger>(_ v: T) -> BinaryNode {
    T.isSigned ? .int(Int64(v)) : .uint(UInt64(v))
}

struct KeyedBinaryEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let box: EncodingBox
    let codingPath: [CodingKey]

    private func put(_ child: EncodingBox, _ key: Key) {
        guard case .keyed(var fields) = box.content else { return }
        box.content = .unset  // drop the reference so the append does not copy
        if let i = fields.firstIndex(where: { $0.0 == key.stringValue }) {
            fields[i].1 = child
        } else {
            fields.append((key.stringValue, child))
        }
        box.content = .keyed(fields)
    }
    private func put(_ n: BinaryNode, _ key: Key) { put(EncodingBox(n), key) }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ v: Bool, forKey key: Key) throws { put(.bool(v), key) }
    mutating func encode(_ v: String, forKey key: Key) throws { put(.string(v), key) }
    mutating func encode(_ v: Double, forKey key: Key) throws { put(.double(v), key) }
    mutating func encode(_ v: Float, forKey key: Key) throws { put(.double(Double(v)), key) }
    mutating func encode(_ v: Int, forKey key: Key) throws { put(node(v), key) }
    mutating func encode(_ v: Int8, forKey key: Key) throws { put(node(v), key) }
    mutating func encode(_ v: Int16, forKey key: Key) throws { put(node(v), key) }
    mutating func encode(_ v: Int32, forKey key: Key) throws { put(node(v), key) }
    mutating func encode(_ v: Int64, forKey key: Key) throws { put(node(v), key) }
    mutating func encode(_ v: UInt, forKey key: Key) throws { put(node(v), key) }
    mutating func encode(_ v: UInt8, forKey key: Key) throws { put(node(v), key) }
    mutating func encode(_ v: UInt16, forKey key: Key) throws { put(node(v), key) }
    mutating func encode(_ v: UInt32, forKey key: Key) throws { put(node(v), key) }
    mutating func encode(_ v: UInt64, forKey key: Key) throws { put(node(v), key) }
    mutating func encode<T: Encodable>(_ v: T, forKey key: Key) throws {
        put(try EncodingBox.encoding(v, codingPath: codingPath + [key]), key)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type,
                                                        forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodingBox()
        put(child, key)
        return BinaryEncoderImpl(box: child, codingPath: codingPath + [key]).container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        let child = EncodingBox()
        put(child, key)
        return BinaryEncoderImpl(box: child, codingPath: codingPath + [key]).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder { superEncoder(forKey: Key(stringValue: "super")!) }
    mutating func superEncoder(forKey key: Key) -> Encoder {
        let child = EncodingBox()
        put(child, key)
        return BinaryEncoderImpl(box: child, codingPath: codingPath + [key])
    }
}

struct UnkeyedBinaryEncoder: UnkeyedEncodingContainer {
    let box: EncodingBox
    let codingPath: [CodingKey]
    var count: Int {
        if case .array(let items) = box.content { return items.count }
        return 0
    }

    private func put(_ child: EncodingBox) {
        guard case .array(var items) = box.content else { return }
        box.content = .unset  // drop the reference so the append does not copy
        items.append(child)
        box.content = .array(items)
    }
    private func put(_ n: BinaryNode) { put(EncodingBox(n)) }
    private var nextPath: [CodingKey] { codingPath + [IndexKey(count)] }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ v: Bool) throws { put(.bool(v)) }
    mutating func encode(_ v: String) throws { put(.string(v)) }
    mutating func encode(_ v: Double) throws { put(.double(v)) }
    mutating func encode(_ v: Float) throws { put(.double(Double(v))) }
    mutating func encode(_ v: Int) throws { put(node(v)) }
    mutating func encode(_ v: Int8) throws { put(node(v)) }
    mutating func encode(_ v: Int16) throws { put(node(v)) }
    mutating func encode(_ v: Int32) throws { put(node(v)) }
    mutating func encode(_ v: Int64) throws { put(node(v)) }
    mutating func encode(_ v: UInt) throws { put(node(v)) }
    mutating func encode(_ v: UInt8) throws { put(node(v)) }
    mutating func encode(_ v: UInt16) throws { put(node(v)) }
    mutating func encode(_ v: UInt32) throws { put(node(v)) }
    mutating func encode(_ v: UInt64) throws { put(node(v)) }
    mutating func encode<T: Encodable>(_ v: T) throws { put(try EncodingBox.encoding(v, codingPath: nextPath)) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodingBox(), path = nextPath
        put(child)
        return BinaryEncoderImpl(box: child, codingPath: path).container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        let child = EncodingBox(), path = nextPath
        put(child)
        return BinaryEncoderImpl(box: child, codingPath: path).unkeyedContainer()
    }
    mutating func superEncoder() -> Encoder {
        let child = EncodingBox(), path = nextPath
        put(child)
        return BinaryEncoderImpl(box: child, codingPath: path)
    }
}

struct SingleValueBinaryEncoder: SingleValueEncodingContainer {
    let box: EncodingBox
    let codingPath: [CodingKey]

    private func put(_ n: BinaryNode) { box.content = .scalar(n) }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ v: Bool) throws { put(.bool(v)) }
    mutating func encode(_ v: String) throws { put(.string(v)) }
    mutating func encode(_ v: Double) throws { put(.double(v)) }
    mutating func encode(_ v: Float) throws { put(.double(Double(v))) }
    mutating func encode(_ v: Int) throws { put(node(v)) }
    mutating func encode(_ v: Int8) throws { put(node(v)) }
    mutating func encode(_ v: Int16) throws { put(node(v)) }
    mutating func encode(_ v: Int32) throws { put(node(v)) }
    mutating func encode(_ v: Int64) throws { put(node(v)) }
    mutating func encode(_ v: UInt) throws { put(node(v)) }
    mutating func encode(_ v: UInt8) throws { put(node(v)) }
    mutating func encode(_ v: UInt16) throws { put(node(v)) }
    mutating func encode(_ v: UInt32) throws { put(node(v)) }
    mutating func encode(_ v: UInt64) throws { put(node(v)) }
    mutating func encode<T: Encodable>(_ v: T) throws {
        let child = try EncodingBox.encoding(v, codingPath: codingPath)
        box.content = child.content
    }
}

/// The coding path entry for an array element.
struct IndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "\(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { intValue = Int(stringValue) }
    init?(intValue: Int) { self.intValue = intValue }
}
