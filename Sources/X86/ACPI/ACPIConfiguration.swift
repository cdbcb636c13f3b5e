/// What the ACPI tables describe: the vCPUs and the virtio-mmio devices. Everything
/// else (interrupt controllers, serial port, sleep and reset registers) is fixed by
/// `Layout`.
public struct ACPIConfiguration: Sendable, Equatable {
    /// Number of vCPUs; vCPU `i` has local APIC id `i`.
    public var cpuCount: Int
    /// One DSDT device (`_HID "LNRO0005"`) per entry, `_UID` = index.
    public var virtioDevices: [VirtioMMIODeviceResource]

    public init(cpuCount: Int, virtioDevices: [VirtioMMIODeviceResource] = []) {
        self.cpuCount = cpuCount
        self.virtioDevices = virtioDevices
    }
}
