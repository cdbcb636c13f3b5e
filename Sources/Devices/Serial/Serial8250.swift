import Foundation

/// A 16550A-compatible UART (the 8250 family), enough for Linux's 8250 driver
/// and simple firmware: transmit goes straight to an output sink, receive
/// comes from a bounded FIFO filled by the VMM (stdin), and interrupts follow
/// the IER/IIR rules so both polled and interrupt-driven drivers work.
public final class Serial8250: BusDevice, @unchecked Sendable {
    /// Plain register state, enough to rebuild the device (snapshots).
    public struct State: Codable, Equatable, Sendable {
        public var interruptEnable: UInt8 = 0
        public var lineControl: UInt8 = 0x03
        public var modemControl: UInt8 = 0x08
        public var scratch: UInt8 = 0
        public var divisorLow: UInt8 = 0x0C   // 9600 baud
        public var divisorHigh: UInt8 = 0
        public var fifoControl: UInt8 = 0
        public var transmitInterruptPending = false
        public var receiveBuffer: [UInt8] = []
        public init() {}
    }

    // Register offsets.
    static let data = 0, interruptEnable = 1, interruptIdentify = 2, lineControl = 3
    static let modemControl = 4, lineStatus = 5, modemStatus = 6, scratch = 7
    // IER bits.
    static let ierReceive: UInt8 = 0x01, ierTransmit: UInt8 = 0x02
    // IIR values.
    static let iirNone: UInt8 = 0x01, iirTransmitEmpty: UInt8 = 0x02, iirReceive: UInt8 = 0x04, iirFIFO: UInt8 = 0xC0
    // LSR bits.
    static let lsrDataReady: UInt8 = 0x01, lsrTransmitEmpty: UInt8 = 0x20, lsrIdle: UInt8 = 0x40
    static let lcrDLAB: UInt8 = 0x80
    static let mcrLoop: UInt8 = 0x10

    /// Bytes the receive FIFO holds; input beyond it waits in the caller.
    public static let receiveCapacity = 1024

    /// Called (outside the lock) when the guest has emptied the receive FIFO, so
    /// a producer holding more input can offer it.
    public var onReceiveDrained: (() -> Void)?

    private var state = State()
    private let lock = NSLock()
    private let output: (UInt8) -> Void
    private let interrupt: (any InterruptLine)?

    /// - Parameters:
    ///   - output: receives every byte the guest transmits.
    ///   - interrupt: the UART's IRQ line (nil: polled only).
    public init(interrupt: (any InterruptLine)?, output: @escaping (UInt8) -> Void) {
        self.interrupt = interrupt
        self.output = output
    }

    /// Queues bytes for the guest to read; returns how many fitted.
    @discardableResult
    public func enqueueInput(_ bytes: some Collection<UInt8>) -> Int {
        lock.lock()
        let room = Serial8250.receiveCapacity - state.receiveBuffer.count
        let accepted = bytes.prefix(max(room, 0))
        let wasEmpty = state.receiveBuffer.isEmpty
        state.receiveBuffer.append(contentsOf: accepted)
        let raise = wasEmpty && !accepted.isEmpty && state.interruptEnable & Serial8250.ierReceive != 0
        lock.unlock()
        if raise { interrupt?.trigger() }
        return accepted.count
    }

    /// Free room in the receive FIFO.
    public var inputRoom: Int {
        lock.lock(); defer { lock.unlock() }
        return Serial8250.receiveCapacity - state.receiveBuffer.count
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        guard !data.isEmpty else { return }
        lock.lock()
        let hadInput = !state.receiveBuffer.isEmpty
        let value = readRegister(Int(offset))
        let drained = hadInput && state.receiveBuffer.isEmpty
        lock.unlock()
        if drained { onReceiveDrained?() }
        data[0] = value
        for i in 1..<data.count { data[i] = 0 }
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard let value = data.first else { return }
        lock.lock()
        let (transmit, raise) = writeRegister(Int(offset), value)
        lock.unlock()
        if let transmit { output(transmit) }
        if raise { interrupt?.trigger() }
    }

    public func snapshot() -> State {
        lock.lock(); defer { lock.unlock() }
        return state
    }

    public func restore(_ newState: State) {
        lock.lock()
        state = newState
        if state.receiveBuffer.count > Serial8250.receiveCapacity {
            state.receiveBuffer = Array(state.receiveBuffer.prefix(Serial8250.receiveCapacity))
        }
        lock.unlock()
    }

    // MARK: - Registers (called with the lock held)

    private var dlab: Bool { state.lineControl & Serial8250.lcrDLAB != 0 }

    private func readRegister(_ offset: Int) -> UInt8 {
        switch offset {
        case Serial8250.data:
            if dlab { return state.divisorLow }
            guard !state.receiveBuffer.isEmpty else { return 0 }
            return state.receiveBuffer.removeFirst()
        case Serial8250.interruptEnable:
            return dlab ? state.divisorHigh : state.interruptEnable
        case Serial8250.interruptIdentify:
            let fifo = state.fifoControl & 1 != 0 ? Serial8250.iirFIFO : 0
            if state.interruptEnable & Serial8250.ierReceive != 0 && !state.receiveBuffer.isEmpty {
                return Serial8250.iirReceive | fifo
            }
            if state.interruptEnable & Serial8250.ierTransmit != 0 && state.transmitInterruptPending {
                state.transmitInterruptPending = false  // reading IIR acknowledges THRE
                return Serial8250.iirTransmitEmpty | fifo
            }
            return Serial8250.iirNone | fifo
        case Serial8250.lineControl:
            return state.lineControl
        case Serial8250.modemControl:
            return state.modemControl
        case Serial8250.lineStatus:
            var lsr = Serial8250.lsrTransmitEmpty | Serial8250.lsrIdle
            if !state.receiveBuffer.isEmpty { lsr |= Serial8250.lsrDataReady }
            return lsr
        case Serial8250.modemStatus:
            if state.modemControl & Serial8250.mcrLoop != 0 {
                // Loopback: outputs DTR/RTS/OUT1/OUT2 appear as DSR/CTS/RI/DCD.
                let m = state.modemControl
                return ((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
            }
            return 0xB0  // DCD, DSR, CTS
        case Serial8250.scratch:
            return state.scratch
        default:
            return 0
        }
    }

    /// Returns a byte to transmit and whether to raise the interrupt.
    private func writeRegister(_ offset: Int, _ value: UInt8) -> (UInt8?, Bool) {
        switch offset {
        case Serial8250.data:
            if dlab { state.divisorLow = value; return (nil, false) }
            if state.modemControl & Serial8250.mcrLoop != 0 {
                let wasEmpty = state.receiveBuffer.isEmpty
                if state.receiveBuffer.count < Serial8250.receiveCapacity { state.receiveBuffer.append(value) }
                return (nil, wasEmpty && state.interruptEnable & Serial8250.ierReceive != 0)
            }
            // The byte leaves at once, so the holding register is empty again.
            state.transmitInterruptPending = true
            return (value, state.interruptEnable & Serial8250.ierTransmit != 0)
        case Serial8250.interruptEnable:
            if dlab { state.divisorHigh = value; return (nil, false) }
            let old = state.interruptEnable
            state.interruptEnable = value & 0x0F
            var raise = false
            if old & Serial8250.ierTransmit == 0 && value & Serial8250.ierTransmit != 0 {
                state.transmitInterruptPending = true
                raise = true
            }
            if old & Serial8250.ierReceive == 0 && value & Serial8250.ierReceive != 0 && !state.receiveBuffer.isEmpty {
                raise = true
            }
            return (nil, raise)
        case Serial8250.interruptIdentify:
            state.fifoControl = value
            if value & 0x02 != 0 { state.receiveBuffer.removeAll() }
            return (nil, false)
        case Serial8250.lineControl:
            state.lineControl = value
        case Serial8250.modemControl:
            state.modemControl = value & 0x1F
        case Serial8250.scratch:
            state.scratch = value
        default:
            break
        }
        return (nil, false)
    }
}
