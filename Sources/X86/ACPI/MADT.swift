/// The Multiple APIC Description Table (ACPI 6.5 §5.2.12): how Linux finds the
/// vCPUs (one Processor Local APIC entry each — the only CPU enumeration a stock
/// kernel uses, since it does not parse the MP table) and the IOAPIC.
public enum MADT {
    /// ACPI 6.3+ MADT revision (adds the Online Capable flag, which Skiff leaves clear).
    public static let revision: UInt8 = 5
    /// xAPIC ids are 8 bits, 0xFF is broadcast, and the IOAPIC takes id `cpuCount`.
    public static let supportedCPUCounts: ClosedRange<Int> = 1...254

    public enum EntryType {
        public static let processorLocalAPIC: UInt8 = 0
        public static let ioAPIC: UInt8 = 1
        public static let interruptSourceOverride: UInt8 = 2
        public static let localAPICNMI: UInt8 = 4
    }

    /// MADT Flags bit 0: the machine also has dual 8259 PICs (KVM's in-kernel
    /// irqchip does). Linux in hardware-reduced mode does not use them.
    public static let pcatCompatible: UInt32 = 1 << 0
    /// Processor Local APIC flags bit 0: usable.
    public static let processorEnabled: UInt32 = 1 << 0

    /// The IOAPIC's id: the first APIC id after the vCPUs', as in the MP table.
    public static func ioAPICID(cpuCount: Int) -> UInt8 { UInt8(truncatingIfNeeded: cpuCount) }

    /// Builds the MADT for `cpuCount` vCPUs with APIC ids and ACPI processor UIDs
    /// 0..<cpuCount.
    ///
    /// There is no Interrupt Source Override: KVM's default GSI routing sends the
    /// in-kernel PIT's IRQ 0 to IOAPIC pin 0 (not pin 2, which is what QEMU sets up
    /// for its own routing and advertises), so ISA IRQs are identity-mapped.
    public static func build(cpuCount: Int) throws -> [UInt8] {
        guard supportedCPUCounts.contains(cpuCount) else {
            throw ACPIError.invalidCPUCount(cpuCount, supported: supportedCPUCounts)
        }
        var t = FirmwareTableBytes()
        t.u32(UInt32(truncatingIfNeeded: Layout.localAPICAddress))
        t.u32(pcatCompatible)
        for cpu in 0..<cpuCount {
            t.u8(EntryType.processorLocalAPIC)
            t.u8(8)
            t.u8(UInt8(cpu)) // ACPI processor UID
            t.u8(UInt8(cpu)) // APIC id
            t.u32(processorEnabled)
        }
        t.u8(EntryType.ioAPIC)
        t.u8(12)
        t.u8(ioAPICID(cpuCount: cpuCount))
        t.u8(0) // reserved
        t.u32(UInt32(truncatingIfNeeded: Layout.ioapicAddress))
        t.u32(0) // GSI base: pins 0–23 are GSIs 0–23
        // NMI on LINT1 of every processor (UID 0xFF), as the MP table says too.
        t.u8(EntryType.localAPICNMI)
        t.u8(6)
        t.u8(0xFF)
        t.u16(0) // flags: conforms to the bus (edge, active high)
        t.u8(1) // LINT1
        return ACPITableHeader.table(signature: "APIC", revision: revision, body: t.bytes)
    }
}
