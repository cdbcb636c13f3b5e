import GuestMemory
@testable import X86

/// Little-endian readers over table bytes, for the ACPI and MP table tests.
extension Array where Element == UInt8 {
    func le16(at offset: Int) -> UInt16 { UInt16(self[offset]) | UInt16(self[offset + 1]) << 8 }
    func le32(at offset: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(self[offset + $1]) << (8 * $1) } }
    func le64(at offset: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(self[offset + $1]) << (8 * $1) } }
    func asciiField(at offset: Int, count: Int) -> String { String(decoding: self[offset..<offset + count], as: UTF8.self) }
    /// Sum mod 256; a table with a valid checksum sums to 0.
    func mod256Sum() -> UInt8 { reduce(0, &+) }
}

enum ACPITestSupport {
    /// 2 MiB of guest RAM from address 0: covers the MP table and the BIOS area.
    static func memory() throws -> GuestMemory {
        try GuestMemory(ranges: [(GuestAddress(0), 2 << 20)])
    }

    /// Reads a whole ACPI table at `address` using the length in its header.
    static func table(at address: UInt64, in memory: GuestMemory) throws -> [UInt8] {
        let length: UInt32 = try memory.load(from: GuestAddress(address + 4))
        return try memory.read(from: GuestAddress(address), count: Int(length))
    }

    static func virtioDevices(_ count: Int) -> [VirtioMMIODeviceResource] {
        (0..<count).map { VirtioMMIODeviceResource(index: $0) }
    }
}
