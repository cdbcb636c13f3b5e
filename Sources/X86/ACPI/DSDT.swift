/// The Differentiated System Description Table: the AML namespace Linux walks for
/// devices it cannot otherwise discover, plus the `\_S5_` sleep type.
///
/// ```
/// Name (\_S5_, Package () { 5, 5, 0, 0 })   // SLP_TYP for soft-off
/// Scope (\_SB_) {
///     Device (COM1) { _HID EISAID("PNP0501"), _UID 0,
///                     _CRS { IO (0x3F8, len 8), Interrupt (Edge, ActiveHigh) {4} } }
///     Device (V000) { _HID "LNRO0005", _UID 0, _CCA 1,
///                     _CRS { Memory32Fixed (base, size), Interrupt (Edge, ActiveHigh) {gsi} } }
///     …
/// }
/// ```
public enum DSDT {
    /// Revision 2: 64-bit AML integers.
    public static let revision: UInt8 = 2
    /// Device names V000…V999.
    public static let maxVirtioDevices = 1000

    public static func build(virtioDevices: [VirtioMMIODeviceResource]) throws -> [UInt8] {
        guard virtioDevices.count <= maxVirtioDevices else {
            throw ACPIError.tooManyDevices(virtioDevices.count, maximum: maxVirtioDevices)
        }
        do {
            return ACPITableHeader.table(signature: "DSDT", revision: revision, body: try aml(virtioDevices))
        } catch let error as AMLError {
            throw ACPIError.aml(error)
        }
    }

    /// The AML body (everything after the table header).
    static func aml(_ virtioDevices: [VirtioMMIODeviceResource]) throws -> [UInt8] {
        var devices = [try serialPort()]
        for (index, device) in virtioDevices.enumerated() {
            devices.append(try virtioMMIO(device, index: index))
        }
        return try sleepStateS5() + AML.scope("\\_SB_", devices)
    }

    /// `\_S5_`: Linux registers ACPI power-off only if this evaluates. With the
    /// hardware-reduced sleep registers it writes `SLP_TYP << 2 | SLP_EN` (0x34 for
    /// SLP_TYP 5) to the sleep control port.
    static func sleepStateS5() throws -> [UInt8] {
        let type = AML.integer(UInt64(Layout.sleepTypeS5))
        return try AML.nameObject("\\_S5_", AML.package([type, type, AML.integer(0), AML.integer(0)]))
    }

    /// COM1: lets Linux's 8250_pnp driver claim port 0x3F8 and map GSI 4 through
    /// the IOAPIC (with no legacy PIC in hardware-reduced mode, ISA IRQs are only
    /// set up for devices ACPI names).
    static func serialPort() throws -> [UInt8] {
        let resources = try AML.resourceTemplate([
            AML.io(minimum: Layout.serialPort, maximum: Layout.serialPort, alignment: 1, length: 8),
            AML.interrupt([Layout.serialIRQ], trigger: .edge, polarity: .activeHigh),
        ])
        return try AML.device("COM1", [
            AML.nameObject("_HID", AML.eisaID("PNP0501")),
            AML.nameObject("_UID", AML.integer(0)),
            AML.nameObject("_CRS", resources),
        ])
    }

    /// A virtio-mmio transport, matched by Linux's virtio_mmio driver through its
    /// ACPI id LNRO0005. The interrupt is edge-triggered, active high: Skiff raises
    /// it through an irqfd, which pulses the GSI (Firecracker advertises the same).
    static func virtioMMIO(_ device: VirtioMMIODeviceResource, index: Int) throws -> [UInt8] {
        guard device.size > 0, device.size <= UInt64(UInt32.max),
              device.base <= UInt64(UInt32.max) - device.size + 1
        else { throw ACPIError.invalidDeviceWindow(base: device.base, size: device.size) }
        // The MADT describes one IOAPIC with GSIs 0...23; another GSI would never fire.
        guard device.irq <= Layout.lastIRQ else { throw ACPIError.invalidDeviceIRQ(device.irq) }
        let resources = try AML.resourceTemplate([
            AML.memory32Fixed(base: UInt32(device.base), length: UInt32(device.size)),
            AML.interrupt([device.irq], trigger: .edge, polarity: .activeHigh),
        ])
        return try AML.device(deviceName(index), [
            AML.nameObject("_HID", AML.string("LNRO0005")),
            AML.nameObject("_UID", AML.integer(UInt64(index))),
            AML.nameObject("_CCA", AML.integer(1)), // DMA is cache-coherent
            AML.nameObject("_CRS", resources),
        ])
    }

    /// `V000`, `V001`, …
    static func deviceName(_ index: Int) -> String {
        let digits = String(index)
        return "V" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits
    }
}
