/// A little-endian byte builder for firmware tables (ACPI and the MP table).
///
/// Firmware tables are packed little-endian structures with checksums. Building them
/// byte by byte keeps every offset explicit, free of Swift struct padding and host
/// byte order, and lets tests inspect the result without guest memory.
struct FirmwareTableBytes {
    private(set) var bytes: [UInt8] = []

    var count: Int { bytes.count }

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) { appendLittleEndian(value) }
    mutating func u32(_ value: UInt32) { appendLittleEndian(value) }
    mutating func u64(_ value: UInt64) { appendLittleEndian(value) }
    mutating func append(_ other: [UInt8]) { bytes += other }
    mutating func zeros(_ count: Int) { bytes += [UInt8](repeating: 0, count: count) }

    /// Appends `text` as a fixed-width ASCII field, cut or padded with `pad`.
    mutating func ascii(_ text: String, width: Int, pad: UInt8 = 0x20) {
        var field = Array(text.utf8.prefix(width))
        field += [UInt8](repeating: pad, count: width - field.count)
        bytes += field
    }

    mutating func set(_ value: UInt8, at offset: Int) { bytes[offset] = value }

    mutating func set16(_ value: UInt16, at offset: Int) {
        for i in 0..<2 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    mutating func set32(_ value: UInt32, at offset: Int) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    /// Pads with zeros until the length is a multiple of `alignment`.
    mutating func align(to alignment: Int) {
        let remainder = bytes.count % alignment
        if remainder != 0 { zeros(alignment - remainder) }
    }

    /// Stores at `offset` the byte that makes `range` sum to zero (mod 256), the
    /// checksum rule shared by ACPI and the MP specification.
    mutating func fixChecksum(at offset: Int, over range: Range<Int>) {
        bytes[offset] = 0
        bytes[offset] = Self.checksum(bytes[range])
    }

    /// The byte that, added to `bytes`, makes their sum zero (mod 256).
    static func checksum<C: Collection>(_ bytes: C) -> UInt8 where C.Element == UInt8 {
        0 &- sum(bytes)
    }

    /// The sum of `bytes` mod 256; a valid table sums to zero.
    static func sum<C: Collection>(_ bytes: C) -> UInt8 where C.Element == UInt8 {
        bytes.reduce(0, &+)
    }

    private mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        for i in 0..<MemoryLayout<T>.size {
            bytes.append(UInt8(truncatingIfNeeded: value >> (8 * i)))
        }
    }
}
