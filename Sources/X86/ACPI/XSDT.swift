/// The Extended System Description Table (ACPI 6.5 §5.2.8): 64-bit pointers to
/// every other table except the DSDT (which the FADT points to) and FACS.
public enum XSDT {
    public static let revision: UInt8 = 1

    public static func build(tableAddresses: [UInt64]) -> [UInt8] {
        var body = FirmwareTableBytes()
        for address in tableAddresses { body.u64(address) }
        return ACPITableHeader.table(signature: "XSDT", revision: revision, body: body.bytes)
    }
}
