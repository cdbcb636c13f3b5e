/// Decodes what `BinaryStateEncoder` wrote. The bytes are parsed into a
/// `BinaryNode` tree first (every length checked, nesting bounded), then the
/// type reads the tree; integers are range-checked into their Swift type.
/// Malformed bytes throw `BinaryCodingError`; a well-formed value of the wrong
/// shape throws `DecodingError`, as JSONDecoder would.
public struct BinaryStateDecoder {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        try BinaryDecoderImpl.value(type, from: try BinaryReader.parse(bytes), codingPath: [])
    }

    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try bytes.withUnsafeBytes { try decode(type, from: $0) }
    }
}

struct BinaryDecoderImpl: Decoder {
    let node: BinaryNode
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    static func value<T: Decodable>(_ type: T.Type, from node: BinaryNode, codingPath: [CodingKey]) throws -> T {
        if type == [UInt8].self, case .bytes(let bytes) = node { return bytes as! T }
        return try T(from: BinaryDecoderImpl(node: node, codingPath: codingPath))
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .keyed(let fields) = node else { throw mismatch([String: Int].self, node, codingPath) }
        return KeyedDecodingContainer(KeyedBinaryDecoder<Key>(fields: fields, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        switch node {
        case .array(let items): return UnkeyedBinaryDecoder(items: items, codingPath: codingPath)
        case .bytes(let bytes):  // a blob read element by element
            return UnkeyedBinaryDecoder(items: bytes.map { .uint(UInt64($0)) }, codingPath: codingPath)
        default: throw mismatch([Int].self, node, codingPath)
        }
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer {
        SingleValueBinaryDecoder(node: node, codingPath: codingPath)
    }
}

func mismatch(_ type: Any.Type, _ node: BinaryNode, _ path: [CodingKey]) -> DecodingError {
    .typeMismatch(type, .init(codingPath: path, debugDescription: "expected \(type), found \(node.kindName)"))
}

/// The scalar readers shared by the three containers. The coding path is
/// built only for an error: one array per field was a large share of a decode.
enum BinaryScalar {
    static func integer<T: FixedWidthInteger>(_ node: BinaryNode, _ path: @autoclosure () -> [CodingKey]) throws -> T {
        // Signed types come only from `int`, unsigned only from `uint`, as
        // the encoder writes them: one encoding per value, so a damaged tag
        // cannot decode to the same number.
        let value: T?
        switch node {
        case .int(let v) where T.isSigned: value = T(exactly: v)
        case .uint(let v) where !T.isSigned: value = T(exactly: v)
        default: throw mismatch(T.self, node, path())
        }
        guard let value else {
            throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "number out of range for \(T.self)"))
        }
        return value
    }

    static func bool(_ node: BinaryNode, _ path: @autoclosure () -> [CodingKey]) throws -> Bool {
        guard case .bool(let b) = node else { throw mismatch(Bool.self, node, path()) }
        return b
    }

    static func string(_ node: BinaryNode, _ path: @autoclosure () -> [CodingKey]) throws -> String {
        guard case .string(let s) = node else { throw mismatch(String.self, node, path()) }
        return s
    }

    static func double(_ node: BinaryNode, _ path: @autoclosure () -> [CodingKey]) throws -> Double {
        switch node {
        case .double(let d): return d
        default: throw mismatch(Double.self, node, path())
        }
    }
}

struct KeyedBinaryDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let fields: [String: BinaryNode]
    let codingPath: [CodingKey]
    var allKeys: [Key] { fields.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { fields[key.stringValue] != nil }

    private func field(_ key: Key) throws -> BinaryNode {
        guard let node = fields[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no value for \"\(key.stringValue)\""))
        }
        return node
    }
    private func path(_ key: Key) -> [CodingKey] { codingPath + [key] }

    func decodeNil(forKey key: Key) throws -> Bool { try field(key) == .null }
    func decode(_ t: Bool.Type, forKey key: Key) throws -> Bool { try BinaryScalar.bool(field(key), path(key)) }
    func decode(_ t: String.Type, forKey key: Key) throws -> String { try BinaryScalar.string(field(key), path(key)) }
    func decode(_ t: Double.Type, forKey key: Key) throws -> Double { try BinaryScalar.double(field(key), path(key)) }
    func decode(_ t: Float.Type, forKey key: Key) throws -> Float { Float(try BinaryScalar.double(field(key), path(key))) }
    func decode(_ t: Int.Type, forKey key: Key) throws -> Int { try BinaryScalar.integer(field(key), path(key)) }
    func decode(_ t: Int8.Type, forKey key: Key) throws -> Int8 { try BinaryScalar.integer(field(key), path(key)) }
    func decode(_ t: Int16.Type, forKey key: Key) throws -> Int16 { try BinaryScalar.integer(field(key), path(key)) }
    func decode(_ t: Int32.Type, forKey key: Key) throws -> Int32 { try BinaryScalar.integer(field(key), path(key)) }
    func decode(_ t: Int64.Type, forKey key: Key) throws -> Int64 { try BinaryScalar.integer(field(key), path(key)) }
    func decode(_ t: UInt.Type, forKey key: Key) throws -> UInt { try BinaryScalar.integer(field(key), path(key)) }
    func decode(_ t: UInt8.Type, forKey key: Key) throws -> UInt8 { try BinaryScalar.integer(field(key), path(key)) }
    func decode(_ t: UInt16.Type, forKey key: Key) throws -> UInt16 { try BinaryScalar.integer(field(key), path(key)) }
    func decode(_ t: UInt32.Type, forKey key: Key) throws -> UInt32 { try BinaryScalar.integer(field(key), path(key)) }
    func decode(_ t: UInt64.Type, forKey key: Key) throws -> UInt64 { try BinaryScalar.integer(field(key), path(key)) }
    func decode<T: Decodable>(_ t: T.Type, forKey key: Key) throws -> T {
        try BinaryDecoderImpl.value(t, from: field(key), codingPath: path(key))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try BinaryDecoderImpl(node: field(key), codingPath: path(key)).container(keyedBy: type)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        try BinaryDecoderImpl(node: field(key), codingPath: path(key)).unkeyedContainer()
    }
    func superDecoder() throws -> Decoder { try superDecoder(forKey: Key(stringValue: "super")!) }
    func superDecoder(forKey key: Key) throws -> Decoder {
        BinaryDecoderImpl(node: fields[key.stringValue] ?? .null, codingPath: path(key))
    }
}

struct UnkeyedBinaryDecoder: UnkeyedDecodingContainer {
    let items: [BinaryNode]
    let codingPath: [CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [BinaryNode], codingPath: [CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    /// The next element and its index (its coding path is `path(index)`, built when needed).
    private mutating func next() throws -> (BinaryNode, Int) {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: path(currentIndex),
                                                              debugDescription: "the array has only \(items.count) elements"))
        }
        defer { currentIndex += 1 }
        return (items[currentIndex], currentIndex)
    }
    private func path(_ index: Int) -> [CodingKey] { codingPath + [IndexKey(index)] }
    private mutating func int<T: FixedWidthInteger>() throws -> T { let (n, i) = try next(); return try BinaryScalar.integer(n, path(i)) }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }
    mutating func decode(_ t: Bool.Type) throws -> Bool { let (n, i) = try next(); return try BinaryScalar.bool(n, path(i)) }
    mutating func decode(_ t: String.Type) throws -> String { let (n, i) = try next(); return try BinaryScalar.string(n, path(i)) }
    mutating func decode(_ t: Double.Type) throws -> Double { let (n, i) = try next(); return try BinaryScalar.double(n, path(i)) }
    mutating func decode(_ t: Float.Type) throws -> Float { let (n, i) = try next(); return Float(try BinaryScalar.double(n, path(i))) }
    mutating func decode(_ t: Int.Type) throws -> Int { try int() }
    mutating func decode(_ t: Int8.Type) throws -> Int8 { try int() }
    mutating func decode(_ t: Int16.Type) throws -> Int16 { try int() }
    mutating func decode(_ t: Int32.Type) throws -> Int32 { try int() }
    mutating func decode(_ t: Int64.Type) throws -> Int64 { try int() }
    mutating func decode(_ t: UInt.Type) throws -> UInt { try int() }
    mutating func decode(_ t: UInt8.Type) throws -> UInt8 { try int() }
    mutating func decode(_ t: UInt16.Type) throws -> UInt16 { try int() }
    mutating func decode(_ t: UInt32.Type) throws -> UInt32 { try int() }
    mutating func decode(_ t: UInt64.Type) throws -> UInt64 { try int() }
    mutating func decode<T: Decodable>(_ t: T.Type) throws -> T {
        let (n, i) = try next()
        return try BinaryDecoderImpl.value(t, from: n, codingPath: path(i))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (n, i) = try next()
        return try BinaryDecoderImpl(node: n, codingPath: path(i)).container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer {
        let (n, i) = try next()
        return try BinaryDecoderImpl(node: n, codingPath: path(i)).unkeyedContainer()
    }
    mutating func superDecoder() throws -> Decoder {
        let (n, i) = try next()
        return BinaryDecoderImpl(node: n, codingPath: path(i))
    }
}

struct SingleValueBinaryDecoder: SingleValueDecodingContainer {
    let node: BinaryNode
    let codingPath: [CodingKey]

    func decodeNil() -> Bool { node == .null }
    func decode(_ t: Bool.Type) throws -> Bool { try BinaryScalar.bool(node, codingPath) }
    func decode(_ t: String.Type) throws -> String { try BinaryScalar.string(node, codingPath) }
    func decode(_ t: Double.Type) throws -> Double { try BinaryScalar.double(node, codingPath) }
    func decode(_ t: Float.Type) throws -> Float { Float(try BinaryScalar.double(node, codingPath)) }
    func decode(_ t: Int.Type) throws -> Int { try BinaryScalar.integer(node, codingPath) }
    func decode(_ t: Int8.Type) throws -> Int8 { try BinaryScalar.integer(node, codingPath) }
    func decode(_ t: Int16.Type) throws -> Int16 { try BinaryScalar.integer(node, codingPath) }
    func decode(_ t: Int32.Type) throws -> Int32 { try BinaryScalar.integer(node, codingPath) }
    func decode(_ t: Int64.Type) throws -> Int64 { try BinaryScalar.integer(node, codingPath) }
    func decode(_ t: UInt.Type) throws -> UInt { try BinaryScalar.integer(node, codingPath) }
    func decode(_ t: UInt8.Type) throws -> UInt8 { try BinaryScalar.integer(node, codingPath) }
    func decode(_ t: UInt16.Type) throws -> UInt16 { try BinaryScalar.integer(node, codingPath) }
    func decode(_ t: UInt32.Type) throws -> UInt32 { try BinaryScalar.integer(node, codingPath) }
    func decode(_ t: UInt64.Type) throws -> UInt64 { try BinaryScalar.integer(node, codingPath) }
    func decode<T: Decodable>(_ t: T.Type) throws -> T { try BinaryDecoderImpl.value(t, from: node, codingPath: codingPath) }
}
