import GuestMemory

/// The Intel MultiProcessor Specification 1.4 tables: a 16-byte floating pointer
/// ("_MP_") followed by the configuration table ("PCMP"), at `Layout.mpTable` — the
/// last KiB of base memory, which Linux's `smp_scan_config` searches.
///
/// Kernels built without ACPI (Skiff's lean test kernel) find their vCPUs, the
/// IOAPIC and the ISA interrupt wiring here.
public enum MPTable {
    /// End of the area the table must fit in (the EBDA/base-memory top).
    static let areaEnd: UInt64 = 0xA0000
    static let floatingPointerLength = 16
    static let headerLength = 44
    static let processorEntryLength = 20
    static let otherEntryLength = 8
    static let isaIRQCount = 16

    /// Entry types (MP spec 1.4 Table 4-3).
    enum EntryType {
        static let processor: UInt8 = 0
        static let bus: UInt8 = 1
        static let ioAPIC: UInt8 = 2
        static let ioInterrupt: UInt8 = 3
        static let localInterrupt: UInt8 = 4
    }

    /// Interrupt types (MP spec 1.4 Table 4-8).
    enum InterruptType {
        static let int: UInt8 = 0
        static let nmi: UInt8 = 1
        static let extINT: UInt8 = 3
    }

    /// Local APIC version an xAPIC reports; Linux then leaves IOAPIC ids alone.
    static let localAPICVersion: UInt8 = 0x14
    /// KVM's in-kernel IOAPIC reports version 0x11.
    static let ioAPICVersion: UInt8 = 0x11
    /// CPU signature (family 6) and feature flags (FPU, APIC) for processor entries.
    static let cpuSignature: UInt32 = 0x600
    static let cpuFeatures: UInt32 = 1 << 0 | 1 << 9

    /// Bytes that do not depend on the vCPU count: pointer, header, bus, IOAPIC,
    /// 16 ISA interrupt entries, 2 local interrupt entries.
    static let fixedLength = floatingPointerLength + headerLength
        + otherEntryLength * (2 + isaIRQCount + 2)

    /// The most vCPUs whose table fits below 0xA0000: 40.
    public static let maxCPUCount = (Int(areaEnd - Layout.mpTable) - fixedLength) / processorEntryLength

    /// The IOAPIC's id: the first APIC id after the vCPUs'.
    public static func ioAPICID(cpuCount: Int) -> UInt8 { UInt8(truncatingIfNeeded: cpuCount) }

    /// Writes the floating pointer and configuration table at `Layout.mpTable`.
    public static func write(cpuCount: Int, to memory: GuestMemory) throws {
        try memory.write(try build(cpuCount: cpuCount), to: GuestAddress(Layout.mpTable))
    }

    /// The floating pointer followed by the configuration table, for placement at
    /// `Layout.mpTable`.
    public static func build(cpuCount: Int) throws -> [UInt8] {
        guard (1...maxCPUCount).contains(cpuCount) else {
            throw MPTableError.invalidCPUCount(cpuCount, maximum: maxCPUCount)
        }
        let ioAPIC = ioAPICID(cpuCount: cpuCount)
        var t = FirmwareTableBytes()

        // Floating pointer structure (MP spec 1.4 §4.1).
        t.ascii("_MP_", width: 4)
        t.u32(UInt32(Layout.mpTable) + UInt32(floatingPointerLength)) // configuration table
        t.u8(1) // length in 16-byte units
        t.u8(4) // spec revision 1.4
        t.u8(0) // checksum
        t.u8(0) // feature 1: a configuration table is present
        t.u8(0) // feature 2 bit 7 clear: virtual-wire mode, no IMCR
        t.zeros(3)
        t.fixChecksum(at: 10, over: 0..<floatingPointerLength)

        // Configuration table header (§4.2); length, count and checksum fixed below.
        let header = t.count
        t.ascii("PCMP", width: 4)
        t.u16(0) // base table length
        t.u8(4) // spec revision
        t.u8(0) // checksum
        t.ascii("SKIFF", width: 8)
        t.ascii("SKIFFVM", width: 12)
        t.u32(0) // OEM table pointer
        t.u16(0) // OEM table size
        t.u16(0) // entry count
        t.u32(UInt32(truncatingIfNeeded: Layout.localAPICAddress))
        t.u16(0) // extended table length: none
        t.u8(0) // extended table checksum
        t.u8(0) // reserved
        var entries = 0

        for cpu in 0..<cpuCount {
            t.u8(EntryType.processor)
            t.u8(UInt8(cpu)) // local APIC id
            t.u8(localAPICVersion)
            t.u8(cpu == 0 ? 0x03 : 0x01) // enabled, + bootstrap processor on vCPU 0
            t.u32(cpuSignature)
            t.u32(cpuFeatures)
            t.zeros(8)
            entries += 1
        }

        t.u8(EntryType.bus)
        t.u8(0) // bus id
        t.ascii("ISA", width: 6)
        entries += 1

        t.u8(EntryType.ioAPIC)
        t.u8(ioAPIC)
        t.u8(ioAPICVersion)
        t.u8(1) // usable
        t.u32(UInt32(truncatingIfNeeded: Layout.ioapicAddress))
        entries += 1

        // ISA IRQ n → IOAPIC pin n, matching KVM's default GSI routing (the in-kernel
        // PIT raises GSI 0, which KVM delivers to pin 0) and the MADT (no overrides).
        for irq in 0..<isaIRQCount {
            t.u8(EntryType.ioInterrupt)
            t.u8(InterruptType.int)
            t.u16(0) // conforms to the bus: ISA is edge-triggered, active high
            t.u8(0) // source bus: ISA
            t.u8(UInt8(irq))
            t.u8(ioAPIC)
            t.u8(UInt8(irq)) // INTIN#
            entries += 1
        }

        // The 8259's output on the BSP's LINT0; NMI on LINT1 of every CPU.
        for (type, destination, pin) in [(InterruptType.extINT, UInt8(0), UInt8(0)), (InterruptType.nmi, UInt8(0xFF), UInt8(1))] {
            t.u8(EntryType.localInterrupt)
            t.u8(type)
            t.u16(0)
            t.u8(0) // source bus
            t.u8(0) // source IRQ
            t.u8(destination)
            t.u8(pin)
            entries += 1
        }

        t.set16(UInt16(t.count - header), at: header + 4)
        t.set16(UInt16(entries), at: header + 34)
        t.fixChecksum(at: header + 7, over: header..<t.count)
        return t.bytes
    }
}
