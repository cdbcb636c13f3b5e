/// The Root System Description Pointer, revision 2 (ACPI 6.5 §5.2.5): what the
/// guest finds first — by scanning 0xE0000–0xFFFFF on 16-byte boundaries, or from
/// `boot_params.acpi_rsdp_addr` / PVH `rsdp_paddr` — and which leads to the XSDT.
public enum RSDP {
    public static let length = 36
    /// The ACPI 1.0 checksum covers only the first 20 bytes.
    static let v1Length = 20
    static let checksumOffset = 8
    static let extendedChecksumOffset = 32

    public static func build(xsdtAddress: UInt64) -> [UInt8] {
        var t = FirmwareTableBytes()
        t.ascii("RSD PTR ", width: 8)
        t.u8(0) // checksum
        t.ascii(ACPITableHeader.oemID, width: 6)
        t.u8(2) // revision: ACPI 2.0+, XSDT present
        t.u32(0) // RsdtAddress: no RSDT; 64-bit OSes use the XSDT
        t.u32(UInt32(length))
        t.u64(xsdtAddress)
        t.u8(0) // extended checksum
        t.zeros(3)
        t.fixChecksum(at: checksumOffset, over: 0..<v1Length)
        t.fixChecksum(at: extendedChecksumOffset, over: 0..<length)
        return t.bytes
    }
}
