/// Just enough of the i8042 keyboard controller for a guest to reset the machine
/// (command 0xFE on port 0x64, what Linux's `reboot=k` does). Registered at
/// port 0x60 with length 5 so offset 0 is the data port and offset 4 the
/// command/status port.
public final class I8042: BusDevice {
    static let commandOffset: UInt64 = 4
    static let pulseResetCommand: UInt8 = 0xFE

    private let onReset: @Sendable () -> Void

    public init(onReset: @escaping @Sendable () -> Void) {
        self.onReset = onReset
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        // Status 0: output buffer empty, input buffer empty; data 0.
        for i in data.indices { data[i] = 0 }
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        if offset == I8042.commandOffset, data.first == I8042.pulseResetCommand { onReset() }
    }
}
