import Testing
@testable import Devices

/// Port I/O is guest-controlled: any address, any width, any value. The legacy
/// devices behind the bus must answer every access without trapping.
struct DeviceFuzzTests {
    @Test func randomAccessesToTheLegacyDevicesNeverTrap() throws {
        let bus = Bus()
        let uart = UARTHarness()
        try bus.insert(uart.uart, at: 0x3F8, length: 8)
        try bus.insert(I8042(onReset: {}), at: 0x60, length: 5)
        try bus.insert(ACPISleepControl(softOffType: 5, resetValue: 0xCF, onPowerOff: {}, onReset: {}),
                       at: 0x600, length: ACPISleepControl.length)
        var state: UInt64 = 0xdecaf
        func next() -> UInt64 {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return state
        }
        let bases: [UInt64] = [0x3F8, 0x60, 0x600, 0, UInt64.max - 4]
        for _ in 0 ..< 20_000 {
            let address = bases[Int(next() % UInt64(bases.count))] &+ next() % 12
            var data = (0 ..< Int(next() % 9)).map { _ in UInt8(truncatingIfNeeded: next()) }
            if next() % 2 == 0 {
                data.withUnsafeMutableBytes { _ = bus.read(address, into: $0) }
            } else {
                data.withUnsafeBytes { _ = bus.write(address, data: $0) }
            }
            if next() % 64 == 0 { uart.uart.enqueueInput((0 ..< Int(next() % 100)).map { UInt8(truncatingIfNeeded: $0) }) }
        }
        // Still a working UART: the scratch register holds a value.
        uart.write(7, 0x5A)
        #expect(uart.read(7) == 0x5A)
    }
}
