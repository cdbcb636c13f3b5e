/// The Fixed ACPI Description Table, revision 6 (ACPI 6.5 §5.2.9), for a
/// hardware-reduced machine: no PM1/GPE blocks, no SCI, no SMI; sleep (S5 power-off)
/// through the sleep control/status registers and reboot through the reset
/// register, all single-byte I/O ports from `Layout`.
public enum FADT {
    public static let revision: UInt8 = 6
    /// ACPI 6.5: FADT Minor Version.
    public static let minorRevision: UInt8 = 5
    /// Length of a revision-6 FADT, up to and including the hypervisor vendor id.
    public static let length = 276

    /// Offsets Linux (ACPICA `struct acpi_table_fadt`) and the tests read.
    public enum Offset {
        public static let dsdt = 40
        public static let sciInterrupt = 46
        public static let bootArchitectureFlags = 109
        public static let flags = 112
        public static let resetRegister = 116
        public static let resetValue = 128
        public static let minorRevision = 131
        public static let xDSDT = 140
        public static let sleepControlRegister = 244
        public static let sleepStatusRegister = 256
        public static let hypervisorVendorID = 268
    }

    /// FADT `Flags` bits (ACPI 6.5 Table 5.10).
    public enum Flag {
        /// WBINVD works (KVM emulates it).
        public static let wbinvd: UInt32 = 1 << 0
        /// No fixed power button: Linux then registers none.
        public static let powerButtonIsControlMethod: UInt32 = 1 << 4
        /// No fixed sleep button.
        public static let sleepButtonIsControlMethod: UInt32 = 1 << 5
        /// RESET_REG/RESET_VALUE are valid: Linux's default reboot (`reboot=acpi`
        /// first, then the keyboard controller) writes them.
        public static let resetRegisterSupported: UInt32 = 1 << 10
        /// Hardware-reduced ACPI: no PM timer, PM1/GPE blocks, SCI or legacy PIC use.
        public static let hardwareReducedACPI: UInt32 = 1 << 20
    }

    /// IA-PC boot architecture flags (ACPI 6.5 Table 5.11). Bits 0 (legacy ISA
    /// devices) and 1 (8042) stay clear: Linux then skips the i8042 driver probe, yet
    /// its reboot path still writes 0xFE to port 0x64 after trying RESET_REG.
    public enum BootArchitecture {
        public static let vgaNotPresent: UInt16 = 1 << 2
        public static let msiNotSupported: UInt16 = 1 << 3
        public static let pcieASPMControls: UInt16 = 1 << 4
        public static let cmosRTCNotPresent: UInt16 = 1 << 5
    }

    public static let flags: UInt32 = Flag.wbinvd | Flag.powerButtonIsControlMethod
        | Flag.sleepButtonIsControlMethod | Flag.resetRegisterSupported | Flag.hardwareReducedACPI
    /// No PCI, so no MSI and no ASPM to touch; no VGA; no CMOS RTC.
    public static let bootArchitectureFlags: UInt16 = BootArchitecture.vgaNotPresent
        | BootArchitecture.msiNotSupported | BootArchitecture.pcieASPMControls
        | BootArchitecture.cmosRTCNotPresent
    /// "Hypervisor Vendor Identity", 8 bytes.
    public static let hypervisorVendorID = "SKIFF"

    public static func build(dsdtAddress: UInt64) -> [UInt8] {
        var t = FirmwareTableBytes()
        t.zeros(ACPITableHeader.length) // header placeholder, so offsets match the spec
        t.u32(0) // FIRMWARE_CTRL: no FACS (optional when hardware-reduced)
        t.u32(0) // DSDT: 32-bit pointer unused, X_DSDT below is authoritative
        t.u8(0) // reserved
        t.u8(0) // Preferred_PM_Profile: unspecified
        t.u16(0) // SCI_INT: no SCI when hardware-reduced
        t.u32(0) // SMI_CMD: no SMM, ACPI is always enabled
        t.u8(0) // ACPI_ENABLE
        t.u8(0) // ACPI_DISABLE
        t.u8(0) // S4BIOS_REQ
        t.u8(0) // PSTATE_CNT
        t.zeros(8 * 4) // PM1a/b EVT, PM1a/b CNT, PM2 CNT, PM TMR, GPE0, GPE1 blocks
        t.zeros(6) // their lengths
        t.u8(0) // GPE1_BASE
        t.u8(0) // CST_CNT
        t.u16(0) // P_LVL2_LAT
        t.u16(0) // P_LVL3_LAT
        t.u16(0) // FLUSH_SIZE
        t.u16(0) // FLUSH_STRIDE
        t.u8(0) // DUTY_OFFSET
        t.u8(0) // DUTY_WIDTH
        t.u8(0) // DAY_ALRM
        t.u8(0) // MON_ALRM
        t.u8(0) // CENTURY: no RTC
        t.u16(bootArchitectureFlags)
        t.u8(0) // reserved
        t.u32(flags)
        GenericAddress.ioPort8(Layout.acpiResetPort).append(to: &t)
        t.u8(Layout.acpiResetValue)
        t.u16(0) // ARM_BOOT_ARCH
        t.u8(minorRevision)
        t.u64(0) // X_FIRMWARE_CTRL
        t.u64(dsdtAddress) // X_DSDT
        for _ in 0..<8 { GenericAddress.none.append(to: &t) } // X_PM1a_EVT_BLK … X_GPE1_BLK
        GenericAddress.ioPort8(Layout.acpiSleepControlPort).append(to: &t)
        GenericAddress.ioPort8(Layout.acpiSleepStatusPort).append(to: &t)
        t.ascii(hypervisorVendorID, width: 8, pad: 0)
        let body = Array(t.bytes[ACPITableHeader.length...])
        return ACPITableHeader.table(signature: "FACP", revision: revision, body: body)
    }
}
