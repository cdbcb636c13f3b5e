/// Resource descriptors for `_CRS` buffers (ACPI 6.5 §6.4).
extension AML {
    /// Interrupt trigger mode of an extended Interrupt descriptor.
    public enum Trigger: Sendable { case edge, level }
    /// Interrupt polarity of an extended Interrupt descriptor.
    public enum Polarity: Sendable { case activeHigh, activeLow }

    /// `ResourceTemplate () { descriptors }`: a buffer of descriptors closed by an
    /// End Tag whose checksum byte is 0 ("treat as checksummed").
    public static func resourceTemplate(_ descriptors: [[UInt8]]) throws -> [UInt8] {
        try buffer(descriptors.flatMap { $0 } + [0x79, 0x00])
    }

    /// `Memory32Fixed (ReadWrite|ReadOnly, base, length)`: large item 0x86.
    public static func memory32Fixed(base: UInt32, length: UInt32, writable: Bool = true) -> [UInt8] {
        [0x86, 0x09, 0x00, writable ? 1 : 0]
            + littleEndian(UInt64(base), count: 4) + littleEndian(UInt64(length), count: 4)
    }

    /// `IO (Decode16, min, max, alignment, length)`: small item 0x47.
    public static func io(minimum: UInt16, maximum: UInt16, alignment: UInt8, length: UInt8) -> [UInt8] {
        [0x47, 0x01]
            + littleEndian(UInt64(minimum), count: 2) + littleEndian(UInt64(maximum), count: 2)
            + [alignment, length]
    }

    /// `Interrupt (ResourceConsumer, trigger, polarity, Exclusive|Shared) { gsis }`:
    /// the extended interrupt descriptor (large item 0x89), which carries 32-bit GSIs.
    public static func interrupt(_ gsis: [UInt32], trigger: Trigger, polarity: Polarity,
                                 shared: Bool = false) throws -> [UInt8] {
        guard (1...255).contains(gsis.count) else { throw AMLError.tooLarge(what: "interrupt list", size: gsis.count) }
        var flags: UInt8 = 0x01 // ResourceConsumer
        if trigger == .edge { flags |= 0x02 }
        if polarity == .activeLow { flags |= 0x04 }
        if shared { flags |= 0x08 }
        let length = 2 + 4 * gsis.count
        return [0x89] + littleEndian(UInt64(length), count: 2) + [flags, UInt8(gsis.count)]
            + gsis.flatMap { littleEndian(UInt64($0), count: 4) }
    }
}
