/// A Generic Address Structure (ACPI 6.5 §5.2.3.2): 12 bytes that say where a
/// register lives (I/O port, memory, …) and how wide it is.
struct GenericAddress {
    static let length = 12
    static let systemIOSpace: UInt8 = 1
    /// Access size 1 = byte access.
    static let byteAccess: UInt8 = 1

    var addressSpace: UInt8
    var bitWidth: UInt8
    var bitOffset: UInt8 = 0
    var accessSize: UInt8
    var address: UInt64

    /// An 8-bit register at I/O `port`.
    static func ioPort8(_ port: UInt16) -> GenericAddress {
        GenericAddress(addressSpace: systemIOSpace, bitWidth: 8, accessSize: byteAccess, address: UInt64(port))
    }

    static let none = GenericAddress(addressSpace: 0, bitWidth: 0, accessSize: 0, address: 0)

    func append(to t: inout FirmwareTableBytes) {
        t.u8(addressSpace)
        t.u8(bitWidth)
        t.u8(bitOffset)
        t.u8(accessSize)
        t.u64(address)
    }
}
