/// A small writer for ACPI Machine Language (ACPI 6.5, chapter 20), enough for a
/// VMM's DSDT: names, integers, strings, buffers, packages, scopes, devices and
/// methods. Each function returns the encoded bytes of one term, so terms nest by
/// passing byte arrays, the way ASL nests.
public enum AML {
    // Opcodes (ACPI 6.5 §20.3).
    static let zeroOp: UInt8 = 0x00
    static let oneOp: UInt8 = 0x01
    static let nameOp: UInt8 = 0x08
    static let bytePrefix: UInt8 = 0x0A
    static let wordPrefix: UInt8 = 0x0B
    static let dwordPrefix: UInt8 = 0x0C
    static let stringPrefix: UInt8 = 0x0D
    static let qwordPrefix: UInt8 = 0x0E
    static let scopeOp: UInt8 = 0x10
    static let bufferOp: UInt8 = 0x11
    static let packageOp: UInt8 = 0x12
    static let methodOp: UInt8 = 0x14
    static let dualNamePrefix: UInt8 = 0x2E
    static let multiNamePrefix: UInt8 = 0x2F
    static let extOpPrefix: UInt8 = 0x5B
    static let deviceOp: UInt8 = 0x82 // after extOpPrefix
    static let rootChar: UInt8 = 0x5C // '\'
    static let returnOp: UInt8 = 0xA4

    // MARK: Names

    /// A NameString: an optional root `\`, then NameSegs separated by dots, e.g.
    /// `"_HID"`, `"\\_SB_"`, `"\\_SB_.COM1"`. Segments shorter than four characters
    /// are padded with `_`, as ASL does.
    public static func name(_ path: String) throws -> [UInt8] {
        var rest = Substring(path)
        var out: [UInt8] = []
        if rest.hasPrefix("\\") {
            out.append(rootChar)
            rest = rest.dropFirst()
        }
        let segments = rest.split(separator: ".", omittingEmptySubsequences: false)
        var encoded: [UInt8] = []
        for segment in segments { encoded += try nameSegment(String(segment), in: path) }
        switch segments.count {
        case 1: out += encoded
        case 2: out += [dualNamePrefix] + encoded
        case 3...255: out += [multiNamePrefix, UInt8(segments.count)] + encoded
        default: throw AMLError.invalidName(path)
        }
        return out
    }

    private static func nameSegment(_ segment: String, in path: String) throws -> [UInt8] {
        let chars = Array(segment.utf8)
        guard (1...4).contains(chars.count) else { throw AMLError.invalidName(path) }
        for (i, c) in chars.enumerated() {
            let isLead = (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || c == UInt8(ascii: "_")
            let isDigit = c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")
            guard isLead || (i > 0 && isDigit) else { throw AMLError.invalidName(path) }
        }
        return chars + [UInt8](repeating: UInt8(ascii: "_"), count: 4 - chars.count)
    }

    // MARK: Data objects

    /// An integer in its shortest encoding: `ZeroOp`, `OneOp`, or a Byte, Word,
    /// DWord or QWord constant.
    public static func integer(_ value: UInt64) -> [UInt8] {
        switch value {
        case 0: return [zeroOp]
        case 1: return [oneOp]
        case ...0xFF: return [bytePrefix] + littleEndian(value, count: 1)
        case ...0xFFFF: return [wordPrefix] + littleEndian(value, count: 2)
        case ...0xFFFF_FFFF: return [dwordPrefix] + littleEndian(value, count: 4)
        default: return [qwordPrefix] + littleEndian(value, count: 8)
        }
    }

    /// A NUL-terminated ASCII string.
    public static func string(_ text: String) throws -> [UInt8] {
        let chars = Array(text.utf8)
        guard chars.allSatisfy({ $0 != 0 && $0 < 0x80 }) else { throw AMLError.invalidString(text) }
        return [stringPrefix] + chars + [0]
    }

    /// The compressed 32-bit EISA id ASL's `EISAID("PNP0501")` produces: three
    /// letters of five bits each and four hex digits, stored big-endian and emitted
    /// as an integer (so `PNP0501` is the DWord 0x0105D041).
    public static func eisaID(_ id: String) throws -> [UInt8] {
        integer(UInt64(try eisaIDValue(id)))
    }

    /// The 32-bit value of an EISA id (see `eisaID(_:)`).
    public static func eisaIDValue(_ id: String) throws -> UInt32 {
        let chars = Array(id.utf8)
        guard chars.count == 7 else { throw AMLError.invalidEISAID(id) }
        var letters: UInt32 = 0
        for c in chars[0..<3] {
            guard c >= UInt8(ascii: "A"), c <= UInt8(ascii: "Z") else { throw AMLError.invalidEISAID(id) }
            letters = letters << 5 | UInt32(c - 0x40)
        }
        guard let product = UInt32(String(decoding: chars[3..<7], as: UTF8.self), radix: 16),
              chars[3..<7].allSatisfy({ $0 != UInt8(ascii: "+") && $0 != UInt8(ascii: "-") })
        else { throw AMLError.invalidEISAID(id) }
        let bigEndian = letters << 16 | product
        return bigEndian.byteSwapped
    }

    /// `Buffer (n) { bytes }`.
    public static func buffer(_ bytes: [UInt8]) throws -> [UInt8] {
        let body = integer(UInt64(bytes.count)) + bytes
        return [bufferOp] + (try packageLength(body.count)) + body
    }

    /// `Package (n) { elements }` of already-encoded data objects.
    public static func package(_ elements: [[UInt8]]) throws -> [UInt8] {
        guard elements.count <= 255 else { throw AMLError.tooLarge(what: "package element count", size: elements.count) }
        let body = [UInt8(elements.count)] + elements.flatMap { $0 }
        return [packageOp] + (try packageLength(body.count)) + body
    }

    // MARK: Named objects and control

    /// `Name (name, object)`.
    public static func nameObject(_ name: String, _ object: [UInt8]) throws -> [UInt8] {
        [nameOp] + (try self.name(name)) + object
    }

    /// `Scope (name) { terms }`.
    public static func scope(_ name: String, _ terms: [[UInt8]]) throws -> [UInt8] {
        let body = try self.name(name) + terms.flatMap { $0 }
        return [scopeOp] + (try packageLength(body.count)) + body
    }

    /// `Device (name) { terms }`.
    public static func device(_ name: String, _ terms: [[UInt8]]) throws -> [UInt8] {
        let body = try self.name(name) + terms.flatMap { $0 }
        return [extOpPrefix, deviceOp] + (try packageLength(body.count)) + body
    }

    /// `Method (name, argumentCount, Serialized/NotSerialized) { terms }`.
    public static func method(_ name: String, argumentCount: Int = 0, serialized: Bool = false,
                              _ terms: [[UInt8]]) throws -> [UInt8] {
        guard (0...7).contains(argumentCount) else { throw AMLError.tooLarge(what: "method argument count", size: argumentCount) }
        let flags = UInt8(argumentCount) | (serialized ? 0x08 : 0)
        let body = try self.name(name) + [flags] + terms.flatMap { $0 }
        return [methodOp] + (try packageLength(body.count)) + body
    }

    /// `Return (object)`.
    public static func returnValue(_ object: [UInt8]) -> [UInt8] {
        [returnOp] + object
    }

    // MARK: PkgLength

    /// The PkgLength that precedes `contentLength` bytes (ACPI 6.5 §20.2.4). The
    /// encoded length counts its own bytes, so the form is picked for the total:
    /// one byte up to 63, then two (12 bits), three (20 bits) or four (28 bits), the
    /// lead byte holding the byte count in bits 7–6 and the low nibble.
    public static func packageLength(_ contentLength: Int) throws -> [UInt8] {
        if contentLength + 1 <= 0x3F { return [UInt8(contentLength + 1)] }
        for extra in 1...3 {
            let total = contentLength + 1 + extra
            guard total < 1 << (4 + 8 * extra) else { continue }
            var out = [UInt8(extra << 6) | UInt8(total & 0x0F)]
            for i in 0..<extra { out.append(UInt8(truncatingIfNeeded: total >> (4 + 8 * i))) }
            return out
        }
        throw AMLError.tooLarge(what: "package length", size: contentLength)
    }

    static func littleEndian(_ value: UInt64, count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }
}
