/// The 36-byte header every ACPI system description table starts with (ACPI 6.5
/// §5.2.6), and the identity Skiff writes into it.
public enum ACPITableHeader {
    public static let length = 36
    /// Byte offsets inside the header.
    static let lengthOffset = 4
    static let checksumOffset = 9

    /// OEMID, also used in the RSDP.
    public static let oemID = "SKIFF"
    /// OEM Table ID (8 bytes); Linux matches quirks on it, so keep it stable.
    public static let oemTableID = "SKIFFVM"
    public static let oemRevision: UInt32 = 1
    /// Creator ID and revision: the tool that made the table.
    public static let creatorID = "SKIF"
    public static let creatorRevision: UInt32 = 1

    /// A whole table: header for `signature`/`revision`, then `body`, with the
    /// length and checksum filled in.
    static func table(signature: String, revision: UInt8, body: [UInt8]) -> [UInt8] {
        var t = FirmwareTableBytes()
        t.ascii(signature, width: 4)
        t.u32(UInt32(length + body.count))
        t.u8(revision)
        t.u8(0) // checksum, fixed below
        t.ascii(oemID, width: 6)
        t.ascii(oemTableID, width: 8)
        t.u32(oemRevision)
        t.ascii(creatorID, width: 4)
        t.u32(creatorRevision)
        t.append(body)
        t.fixChecksum(at: checksumOffset, over: 0..<t.count)
        return t.bytes
    }
}
