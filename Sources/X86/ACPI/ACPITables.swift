import GuestMemory

/// The complete ACPI table set Skiff gives a guest: RSDP → XSDT → {FADT → DSDT, MADT},
/// laid out contiguously from `Layout.acpiRSDP`.
public enum ACPITables {
    /// Tables start on 16-byte boundaries (not required by ACPI, but tidy and safe).
    static let alignment = 16

    /// Where each table goes and its bytes.
    public struct Image: Sendable, Equatable {
        /// Guest-physical address of `bytes[0]` (the RSDP).
        public var base: GuestAddress
        /// Everything from the RSDP to the end of the last table, gaps zeroed.
        public var bytes: [UInt8]
        /// Each table's signature and address, in order: "RSD PTR ", "XSDT", "FACP", "APIC", "DSDT".
        /// (Pairs, not a dictionary: the first `[String: …]` of a process costs 0.4 M
        /// instructions of runtime type look-ups, at every start.)
        public var tables: [Table]

        public struct Table: Sendable, Equatable {
            public var signature: String
            public var address: GuestAddress
        }

        /// Table signature → address.
        public var addresses: [String: GuestAddress] {
            Dictionary(uniqueKeysWithValues: tables.map { ($0.signature, $0.address) })
        }
    }

    /// Writes RSDP at `Layout.acpiRSDP` and the other tables after it; returns the
    /// RSDP address. Throws if they don't fit below `Layout.acpiTablesEnd`.
    @discardableResult
    public static func write(_ config: ACPIConfiguration, to memory: GuestMemory) throws -> GuestAddress {
        let image = try build(config)
        try memory.write(image.bytes, to: image.base)
        return image.base
    }

    /// Builds the tables without touching guest memory.
    public static func build(_ config: ACPIConfiguration) throws -> Image {
        let base = Layout.acpiRSDP
        let dsdt = try DSDT.build(virtioDevices: config.virtioDevices)
        let madt = try MADT.build(cpuCount: config.cpuCount)

        // Addresses follow from sizes alone: RSDP, XSDT (two entries), FADT, MADT, DSDT.
        let xsdtOffset = aligned(RSDP.length)
        let xsdtLength = ACPITableHeader.length + 2 * 8
        let fadtOffset = aligned(xsdtOffset + xsdtLength)
        let madtOffset = aligned(fadtOffset + FADT.length)
        let dsdtOffset = aligned(madtOffset + madt.count)
        let end = dsdtOffset + dsdt.count

        let available = Int(Layout.acpiTablesEnd - base)
        guard end <= available else { throw ACPIError.tablesTooLarge(size: end, available: available) }

        let address = { (offset: Int) in base + UInt64(offset) }
        let fadt = FADT.build(dsdtAddress: address(dsdtOffset))
        let xsdt = XSDT.build(tableAddresses: [address(fadtOffset), address(madtOffset)])
        let rsdp = RSDP.build(xsdtAddress: address(xsdtOffset))

        var bytes = [UInt8](repeating: 0, count: end)
        for (offset, table) in [(0, rsdp), (xsdtOffset, xsdt), (fadtOffset, fadt), (madtOffset, madt), (dsdtOffset, dsdt)] {
            bytes.replaceSubrange(offset..<offset + table.count, with: table)
        }
        return Image(base: GuestAddress(base), bytes: bytes, tables: [
            Image.Table(signature: "RSD PTR ", address: GuestAddress(base)),
            Image.Table(signature: "XSDT", address: GuestAddress(address(xsdtOffset))),
            Image.Table(signature: "FACP", address: GuestAddress(address(fadtOffset))),
            Image.Table(signature: "APIC", address: GuestAddress(address(madtOffset))),
            Image.Table(signature: "DSDT", address: GuestAddress(address(dsdtOffset))),
        ])
    }

    static func aligned(_ offset: Int) -> Int {
        (offset + alignment - 1) / alignment * alignment
    }
}
