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
        /// Table signature ("RSD PTR ", "XSDT", "FACP", "APIC", "DSDT") → address.
        public var addresses: [String: GuestAddress]
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
        return Image(base: GuestAddress(base), bytes: bytes, addresses: [
            "RSD PTR ": GuestAddress(base), "XSDT": GuestAddress(address(xsdtOffset)),
            "FACP": GuestAddress(address(fadtOffset)), "APIC": GuestAddress(address(madtOffset)),
            "DSDT": GuestAddress(address(dsdtOffset)),
        ])
    }

    static func aligned(_ offset: Int) -> Int {
        (offset + alignment - 1) / alignment * alignment
    }
}
