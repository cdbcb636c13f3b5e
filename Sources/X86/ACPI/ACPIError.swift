/// Why Skiff's ACPI tables could not be built or written.
public enum ACPIError: Error, Equatable, CustomStringConvertible {
    /// The vCPU count is outside what an xAPIC MADT can describe.
    case invalidCPUCount(Int, supported: ClosedRange<Int>)
    /// A virtio-mmio window is empty or does not lie below 4 GiB (`Memory32Fixed`).
    case invalidDeviceWindow(base: UInt64, size: UInt64)
    /// A device interrupt that is not one of the IOAPIC's GSIs (0...Layout.lastIRQ).
    case invalidDeviceIRQ(UInt32)
    /// More virtio-mmio devices than DSDT device names Skiff hands out.
    case tooManyDevices(Int, maximum: Int)
    /// The tables do not fit between the RSDP and `Layout.acpiTablesEnd`.
    case tablesTooLarge(size: Int, available: Int)
    /// The AML writer was asked for something AML cannot express.
    case aml(AMLError)

    public var description: String {
        switch self {
        case .invalidCPUCount(let n, let range):
            return "ACPI: \(n) vCPUs requested; the MADT supports \(range.lowerBound)...\(range.upperBound)"
        case .invalidDeviceWindow(let base, let size):
            return "ACPI: virtio-mmio window 0x\(String(base, radix: 16))+0x\(String(size, radix: 16)) must be non-empty and below 4 GiB"
        case .invalidDeviceIRQ(let irq):
            return "ACPI: virtio-mmio IRQ \(irq) is not a GSI of the IOAPIC (0...\(Layout.lastIRQ))"
        case .tooManyDevices(let n, let max):
            return "ACPI: \(n) virtio-mmio devices; the DSDT supports at most \(max)"
        case .tablesTooLarge(let size, let available):
            return "ACPI: tables need \(size) bytes but only \(available) are reserved for them"
        case .aml(let error):
            return "ACPI: \(error)"
        }
    }
}
