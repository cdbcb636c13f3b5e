import FoundationEssentials
/// CRC-64/XZ (as used by xz and Go's hash/crc64 ECMA table): the ECMA-182
/// polynomial 0x42F0E1EBA9EA3693, reflected (0xC96C5795D7870F42), initial
/// value and final XOR all ones. Check value from the CRC catalogue:
/// CRC-64/XZ("123456789") = 0x995DC9BBDF1939FA.
///
/// It guards snapshot files against accidental corruption (a torn write, a bad
/// disk, a truncated copy), not against someone who edits a file on purpose:
/// every value read from a snapshot is validated anyway. Computed eight bytes
/// at a time ("slicing-by-8") so checking a memory file of gigabytes stays
/// close to disk speed.
public struct CRC64: Sendable {
    public private(set) var value: UInt64 = ~0

    public init() {}

    static let reflectedPolynomial: UInt64 = 0xC96C_5795_D787_0F42

    /// tables[k][b]: the CRC of byte b followed by k zero bytes.
    static let tables: [[UInt64]] = {
        var t = [[UInt64]](repeating: [UInt64](repeating: 0, count: 256), count: 8)
        for b in 0..<256 {
            var crc = UInt64(b)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ reflectedPolynomial : crc >> 1 }
            t[0][b] = crc
        }
        for k in 1..<8 {
            for b in 0..<256 { t[k][b] = (t[k - 1][b] >> 8) ^ t[0][Int(t[k - 1][b] & 0xFF)] }
        }
        return t
    }()

    /// The finished checksum of everything passed to `update` so far.
    public var checksum: UInt64 { ~value }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var crc = value
        var i = 0
        let n = bytes.count
        Self.tables.withUnsafeBufferPointer { tables in
            let t0 = tables[0], t1 = tables[1], t2 = tables[2], t3 = tables[3]
            let t4 = tables[4], t5 = tables[5], t6 = tables[6], t7 = tables[7]
            while n - i >= 8 {
                let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                crc ^= word
                crc = t7[Int(crc & 0xFF)] ^ t6[Int((crc >> 8) & 0xFF)] ^ t5[Int((crc >> 16) & 0xFF)]
                    ^ t4[Int((crc >> 24) & 0xFF)] ^ t3[Int((crc >> 32) & 0xFF)] ^ t2[Int((crc >> 40) & 0xFF)]
                    ^ t1[Int((crc >> 48) & 0xFF)] ^ t0[Int(crc >> 56)]
                i += 8
            }
            while i < n {
                crc = t0[Int((crc ^ UInt64(bytes[i])) & 0xFF)] ^ (crc >> 8)
                i += 1
            }
        }
        value = crc
    }

    public mutating func update(_ bytes: some ContiguousBytes) {
        bytes.withUnsafeBytes { update($0) }
    }

    public static func checksum(_ bytes: some ContiguousBytes) -> UInt64 {
        var c = CRC64()
        c.update(bytes)
        return c.checksum
    }

    /// "995dc9bbdf1939fa": sixteen lowercase hex digits, as the manifest writes it.
    public static func hex(_ value: UInt64) -> String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
