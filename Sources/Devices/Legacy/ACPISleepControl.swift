/// The registers a hardware-reduced ACPI FADT points at for power-off and reset:
/// SLEEP_CONTROL_REG (offset 0), SLEEP_STATUS_REG (offset 1) and RESET_REG
/// (offset 2). Writing SLP_EN with the `_S5_` sleep type powers off; writing the
/// reset value reboots.
public final class ACPISleepControl: BusDevice {
    static let sleepEnable: UInt8 = 1 << 5
    public static let length: UInt64 = 3

    private let softOffType: UInt8
    private let resetValue: UInt8
    private let onPowerOff: @Sendable () -> Void
    private let onReset: @Sendable () -> Void

    public init(softOffType: UInt8, resetValue: UInt8, onPowerOff: @escaping @Sendable () -> Void, onReset: @escaping @Sendable () -> Void) {
        self.softOffType = softOffType
        self.resetValue = resetValue
        self.onPowerOff = onPowerOff
        self.onReset = onReset
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        for i in data.indices { data[i] = 0 }
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard let value = data.first else { return }
        switch offset {
        case 0 where value & ACPISleepControl.sleepEnable != 0 && (value >> 2) & 0x7 == softOffType:
            onPowerOff()
        case 2 where value == resetValue:
            onReset()
        default:
            break
        }
    }
}
