import Posix
import Synchronization
import Testing
@testable import Devices

/// How often a device callback ran; callbacks may come from any thread.
final class Counter: Sendable {
    private let n = Atomic<Int>(0)
    var count: Int { n.load(ordering: .relaxed) }
    func increment() { n.wrappingAdd(1, ordering: .relaxed) }
}

final class CountingInterrupt: InterruptLine {
    private let counter = Counter()
    var count: Int { counter.count }
    func trigger() { counter.increment() }
}

/// Collects what a device transmits (from whichever thread it runs on).
final class ByteSink: Sendable {
    private let collected = Lock<[UInt8]>([])
    var bytes: [UInt8] { collected.withLock { $0 } }
    func append(_ byte: UInt8) { collected.withLock { $0.append(byte) } }
}

/// Drives the UART through its registers as a guest driver would.
final class UARTHarness {
    let irq: CountingInterrupt
    private let sink: ByteSink
    var transmitted: [UInt8] { sink.bytes }
    let uart: Serial8250

    init() {
        let irq = CountingInterrupt(), sink = ByteSink()
        self.irq = irq
        self.sink = sink
        uart = Serial8250(interrupt: irq) { sink.append($0) }
    }

    func read(_ offset: UInt64) -> UInt8 {
        var b: UInt8 = 0
        withUnsafeMutableBytes(of: &b) { uart.read(offset: offset, into: $0) }
        return b
    }

    func write(_ offset: UInt64, _ value: UInt8) {
        withUnsafeBytes(of: value) { uart.write(offset: offset, data: $0) }
    }
}

struct Serial8250Tests {
    @Test func transmitsBytesAndReportsAnEmptyTransmitter() {
        let h = UARTHarness()
        for b in "hi\n".utf8 { h.write(0, b) }
        #expect(h.transmitted == Array("hi\n".utf8))
        #expect(h.read(5) & 0x60 == 0x60)  // THRE | TEMT
        #expect(h.read(2) & 0x01 == 0x01)  // no interrupt pending
        #expect(h.irq.count == 0)          // IER is 0: polled mode raises nothing
    }

    @Test func receivedBytesSetDataReadyAndRaiseTheInterrupt() {
        let h = UARTHarness()
        h.write(1, 0x01)                    // IER: receive
        #expect(h.uart.enqueueInput(Array("ab".utf8)) == 2)
        #expect(h.irq.count == 1)
        #expect(h.read(5) & 0x01 == 0x01)   // DR
        #expect(h.read(2) & 0x0F == 0x04)   // IIR: received data
        #expect(h.read(0) == UInt8(ascii: "a"))
        #expect(h.read(0) == UInt8(ascii: "b"))
        #expect(h.read(5) & 0x01 == 0)
        #expect(h.read(2) & 0x01 == 0x01)
    }

    @Test func transmitterEmptyInterruptIsRaisedOnEnableAndClearedByReadingIIR() {
        let h = UARTHarness()
        h.write(1, 0x02)                    // IER: THRE
        #expect(h.irq.count == 1)
        #expect(h.read(2) & 0x0F == 0x02)
        #expect(h.read(2) & 0x01 == 0x01)   // acknowledged by the read
        h.write(0, 0x41)
        #expect(h.irq.count == 2)
        #expect(h.read(2) & 0x0F == 0x02)
    }

    @Test func divisorLatchSharesOffsetsZeroAndOne() {
        let h = UARTHarness()
        h.write(3, 0x80)                    // DLAB
        h.write(0, 0x01); h.write(1, 0x02)
        #expect(h.read(0) == 0x01 && h.read(1) == 0x02)
        h.write(3, 0x03)
        #expect(h.transmitted.isEmpty)      // divisor writes are not data
        #expect(h.read(1) == 0)             // IER untouched
    }

    @Test func loopbackEchoesAndScratchRegisterHolds() {
        let h = UARTHarness()
        h.write(4, 0x10)                    // MCR loopback
        h.write(0, 0x5A)
        #expect(h.transmitted.isEmpty)
        #expect(h.read(0) == 0x5A)
        h.write(7, 0xA5)
        #expect(h.read(7) == 0xA5)
    }

    @Test func receiveFIFOIsBoundedAndRestorable() {
        let h = UARTHarness()
        let accepted = h.uart.enqueueInput([UInt8](repeating: 0x61, count: Serial8250.receiveCapacity + 10))
        #expect(accepted == Serial8250.receiveCapacity)
        #expect(h.uart.inputRoom == 0)
        let state = h.uart.snapshot()
        let copy = UARTHarness()
        copy.uart.restore(state)
        #expect(copy.uart.snapshot() == state)
        #expect(copy.read(0) == 0x61)
    }

    @Test func drainingTheFIFONotifiesTheProducer() {
        let h = UARTHarness()
        let drained = Counter()
        h.uart.onReceiveDrained = { drained.increment() }
        h.uart.enqueueInput([1, 2])
        _ = h.read(0)
        #expect(drained.count == 0)
        _ = h.read(0)
        #expect(drained.count == 1)
    }
}

struct LegacyDeviceTests {
    @Test func i8042ResetsOnlyOnPulseCommand() {
        let resets = Counter()
        let dev = I8042 { resets.increment() }
        withUnsafeBytes(of: UInt8(0xFE)) { dev.write(offset: 0, data: $0) }   // data port: ignored
        withUnsafeBytes(of: UInt8(0xAA)) { dev.write(offset: 4, data: $0) }
        #expect(resets.count == 0)
        withUnsafeBytes(of: UInt8(0xFE)) { dev.write(offset: 4, data: $0) }
        #expect(resets.count == 1)
    }

    @Test func acpiSleepControlPowersOffOnS5AndResetsOnResetValue() {
        let off = Counter(), reset = Counter()
        let dev = ACPISleepControl(softOffType: 5, resetValue: 1, onPowerOff: { off.increment() }, onReset: { reset.increment() })
        withUnsafeBytes(of: UInt8(5 << 2)) { dev.write(offset: 0, data: $0) }           // no SLP_EN
        withUnsafeBytes(of: UInt8((3 << 2) | 0x20)) { dev.write(offset: 0, data: $0) }  // S3: not supported
        #expect(off.count == 0)
        withUnsafeBytes(of: UInt8((5 << 2) | 0x20)) { dev.write(offset: 0, data: $0) }
        #expect(off.count == 1)
        withUnsafeBytes(of: UInt8(1)) { dev.write(offset: 2, data: $0) }
        #expect(reset.count == 1)
    }
}

struct BusTests {
    final class Recorder: BusDevice {
        private let last = Lock<UInt64?>(nil)
        var lastOffset: UInt64? { last.withLock { $0 } }
        func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) { last.withLock { $0 = offset }; data[0] = 7 }
        func write(offset: UInt64, data: UnsafeRawBufferPointer) { last.withLock { $0 = offset } }
    }

    @Test func routesToTheRightDeviceWithRelativeOffsets() throws {
        let bus = Bus()
        let a = Recorder(), b = Recorder()
        try bus.insert(a, at: 0x3F8, length: 8)
        try bus.insert(b, at: 0x60, length: 5)
        var byte: UInt8 = 0
        #expect(withUnsafeMutableBytes(of: &byte) { bus.read(0x3FD, into: $0) })
        #expect(a.lastOffset == 5 && byte == 7)
        #expect(withUnsafeBytes(of: byte) { bus.write(0x64, data: $0) })
        #expect(b.lastOffset == 4)
        #expect(!withUnsafeMutableBytes(of: &byte) { bus.read(0x400, into: $0) })
        #expect(!withUnsafeMutableBytes(of: &byte) { bus.read(0x3F7, into: $0) })
    }

    @Test func refusesOverlapsAndEmptyRanges() throws {
        let bus = Bus()
        try bus.insert(Recorder(), at: 0x100, length: 0x10)
        #expect(throws: Bus.BusError.self) { try bus.insert(Recorder(), at: 0x108, length: 0x10) }
        #expect(throws: Bus.BusError.self) { try bus.insert(Recorder(), at: 0xF8, length: 0x10) }
        #expect(throws: Bus.BusError.self) { try bus.insert(Recorder(), at: 0x200, length: 0) }
        #expect(throws: Bus.BusError.self) { try bus.insert(Recorder(), at: UInt64.max, length: 2) }
    }
}
