/// The guest-physical memory map and fixed I/O resources of a Skiff x86-64 guest,
/// in one place. Everything that puts something in guest memory takes its address
/// from here.
public enum Layout {
    // MARK: Low memory (below 1 MiB)

    /// Boot GDT for the 64-bit entry of a bzImage.
    public static let bootGDT: UInt64 = 0x500
    /// Boot IDT (empty; the kernel installs its own).
    public static let bootIDT: UInt64 = 0x520
    /// PVH `hvm_start_info`, followed by its memory map.
    public static let pvhStartInfo: UInt64 = 0x6000
    public static let pvhModuleList: UInt64 = 0x6040
    public static let pvhMemoryMap: UInt64 = 0x6080
    public static let pvhMemoryMapMaxEntries = (0x7000 - 0x6080) / 24
    /// Linux `boot_params` ("zero page") for the 64-bit boot protocol.
    public static let zeroPage: UInt64 = 0x7000
    /// Identity-map page tables for the 64-bit entry: PML4, PDPT, and PDs.
    public static let pml4: UInt64 = 0x9000
    public static let pdpt: UInt64 = 0xA000
    /// Four page directories of 2 MiB pages map the first 4 GiB.
    public static let pageDirectories: UInt64 = 0xB000
    /// Boot stack for the bzImage entry (grows down from here).
    public static let bootStack: UInt64 = 0x8FF0
    /// The kernel command line.
    public static let commandLine: UInt64 = 0x20000
    public static let commandLineMaxSize: UInt64 = 0x10000
    /// The MP floating pointer + configuration table, at the top of base memory
    /// (the EBDA area that Linux scans).
    public static let mpTable: UInt64 = 0x9FC00
    /// End of usable base memory; 0x9FC00..<0x100000 is reserved.
    public static let baseMemoryEnd: UInt64 = 0x9FC00
    /// ACPI: RSDP in the BIOS area Linux scans (0xE0000–0xFFFFF), tables after it.
    public static let acpiRSDP: UInt64 = 0xE0000
    public static let acpiTablesEnd: UInt64 = 0x100000

    // MARK: RAM

    /// Where kernels are loaded ("HIMEM"); RAM below is used for boot structures.
    public static let highMemoryStart: UInt64 = 0x100000
    /// RAM runs from 0 to here, then resumes at 4 GiB: the hole holds device MMIO.
    public static let mmioHoleStart: UInt64 = 0xC000_0000
    public static let mmioHoleEnd: UInt64 = 0x1_0000_0000

    // MARK: Devices in the MMIO hole

    /// virtio-mmio transports, one 4 KiB window each.
    public static let virtioMMIOBase: UInt64 = 0xD000_0000
    public static let virtioMMIOSize: UInt64 = 0x1000
    public static let virtioMMIOMaxDevices = 16
    public static let ioapicAddress: UInt64 = 0xFEC0_0000
    public static let localAPICAddress: UInt64 = 0xFEE0_0000

    // MARK: Interrupts (GSIs on the in-kernel IOAPIC)

    public static let serialIRQ: UInt32 = 4
    /// virtio-mmio devices take GSIs 5, 6, 7, … (skipping 8, the RTC, is not needed:
    /// Skiff has no RTC) up to 23.
    public static let firstVirtioIRQ: UInt32 = 5
    public static let lastIRQ: UInt32 = 23

    // MARK: I/O ports

    public static let serialPort: UInt16 = 0x3F8
    public static let i8042DataPort: UInt16 = 0x60
    public static let i8042CommandPort: UInt16 = 0x64
    /// ACPI hardware-reduced sleep control / status and reset register (one byte each).
    public static let acpiSleepControlPort: UInt16 = 0x600
    public static let acpiSleepStatusPort: UInt16 = 0x601
    public static let acpiResetPort: UInt16 = 0x602
    /// Value written to the reset register to reboot.
    public static let acpiResetValue: UInt8 = 0x1
    /// SLP_TYP Skiff advertises for S5 (soft off) in the DSDT's `_S5_`.
    public static let sleepTypeS5: UInt8 = 5
}
