import Posix

/// A 16550A-compatible UART (the 8250 family), enough for Linux's 8250 driver
/// and simple firmware: transmit goes straight to an output sink, receive
/// comes from a bounded FIFO filled by the VMM (stdin), and interrupts follow
/// the IER/IIR rules so both polled and interrupt-driven drivers work.
public final class Serial8250: BusDevice {
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
    public var onReceiveDrained: (@Sendable () -> Void)? {
        get { drainedHandler.withLock { $0 } }
        set { drainedHandler.withLock { $0 = newValue } }
    }

    private let state = Lock(State())
    private let drainedHandler = Lock<(@Sendable () -> Void)?>(nil)
    private let output: @Sendable (UInt8) -> Void
    private let interrupt: (any InterruptLine)?

    /// - Parameters:
    ///   - output: receives every byte the guest transmits.
    ///   - interrupt: the UART's IRQ line (nil: polled only).
    public init(interrupt: (any InterruptLine)?, output: @escaping @Sendable (UInt8) -> Void) {
        self.interrupt = interrupt
        self.output = output
    }

    /// Queues bytes for the guest to read; returns how many fitted.
    @discardableResult
    public func enqueueInput(_ bytes: some Collection<UInt8>) -> Int {
        let (accepted, raise) = state.withLock { state in
            let room = Serial8250.receiveCapacity - state.receiveBuffer.count
            let accepted = Array(bytes.prefix(max(room, 0)))
            let wasEmpty = state.receiveBuffer.isEmpty
            state.receiveBuffer.append(contentsOf: accepted)
            return (accepted.count, wasEmpty && !accepted.isEmpty && state.interruptEnable & Serial8250.ierReceive != 0)
        }
        if raise { interrupt?.trigger() }
        return accepted
    }

    /// Free room in the receive FIFO.
    public var inputRoom: Int {
        state.withLock { Serial8250.receiveCapacity - $0.receiveBuffer.count }
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        guard !data.isEmpty else { return }
        let (value, drained) = state.withLock { state in
            let hadInput = !state.receiveBuffer.isEmpty
            let value = state.readRegister(Int(offset))
            return (value, hadInput && state.receiveBuffer.isEmpty)
        }
        if drained { onReceiveDrained?() }
        data[0] = value
        for i in 1..<data.count { data[i] = 0 }
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard let value = data.first else { return }
        let (transmit, raise) = state.withLock { $0.writeRegister(Int(offset), value) }
        if let transmit { output(transmit) }
        if raise { interrupt?.trigger() }
    }

    public func snapshot() -> State {
        state.withLock { $0 }
    }

    public func restore(_ newState: State) {
        var newState = newState
        if newState.receiveBuffer.count > Serial8250.receiveCapacity {
            newState.receiveBuffer = Array(newState.receiveBuffer.prefix(Serial8250.receiveCapacity))
        }
        state.withLock { $0 = newState }
    }
}

// MARK: - Registers (called with the lock held)

extension Serial8250.State {
    private var dlab: Bool { lineControl & Serial8250.lcrDLAB != 0 }

    fileprivate mutating func readRegister(_ offset: Int) -> UInt8 {
        switch offset {
        case Serial8250.data:
            if dlab { return divisorLow }
            guard !receiveBuffer.isEmpty else { return 0 }
            return receiveBuffer.removeFirst()
        case Serial8250.interruptEnable:
            return dlab ? divisorHigh : interruptEnable
        case Serial8250.interruptIdentify:
            let fifo = fifoControl & 1 != 0 ? Serial8250.iirFIFO : 0
            if interruptEnable & Serial8250.ierReceive != 0 && !receiveBuffer.isEmpty {
                return Serial8250.iirReceive | fifo
            }
            if interruptEnable & Serial8250.ierTransmit != 0 && transmitInterruptPending {
                transmitInterruptPending = false  // reading IIR acknowledges THRE
                return Serial8250.iirTransmitEmpty | fifo
            }
            return Serial8250.iirNone | fifo
        case Serial8250.lineControl:
            return lineControl
        case Serial8250.modemControl:
            return modemControl
        case Serial8250.lineStatus:
            var lsr = Serial8250.lsrTransmitEmpty | Serial8250.lsrIdle
            if !receiveBuffer.isEmpty { lsr |= Serial8250.lsrDataReady }
            return lsr
        case Serial8250.modemStatus:
            if modemControl & Serial8250.mcrLoop != 0 {
                // Loopback: outputs DTR/RTS/OUT1/OUT2 appear as DSR/CTS/RI/DCD.
                let m = modemControl
                return ((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
            }
            return 0xB0  // DCD, DSR, CTS
        case Serial8250.scratch:
            return scratch
        default:
            return 0
        }
    }

    /// Returns a byte to transmit and whether to raise the interrupt.
    fileprivate mutating func writeRegister(_ offset: Int, _ value: UInt8) -> (UInt8?, Bool) {
        switch offset {
        case Serial8250.data:
            if dlab { divisorLow = value; return (nil, false) }
            if modemControl & Serial8250.mcrLoop != 0 {
                let wasEmpty = receiveBuffer.isEmpty
                if receiveBuffer.count < Serial8250.receiveCapacity { receiveBuffer.append(value) }
                return (nil, wasEmpty && interruptEnable & Serial8250.ierReceive != 0)
            }
            // The byte leaves at once, so the holding register is empty again.
            transmitInterruptPending = true
            return (value, interruptEnable & Serial8250.ierTransmit != 0)
        case Serial8250.interruptEnable:
            if dlab { divisorHigh = value; return (nil, false) }
            let old = interruptEnable
            interruptEnable = value & 0x0F
            var raise = false
            if old & Serial8250.ierTransmit == 0 && value & Serial8250.ierTransmit != 0 {
                transmitInterruptPending = true
                raise = true
            }
            if old & Serial8250.ierReceive == 0 && value & Serial8250.ierReceive != 0 && !receiveBuffer.isEmpty {
                raise = true
            }
            return (nil, raise)
        case Serial8250.interruptIdentify:
            fifoControl = value
            if value & 0x02 != 0 { receiveBuffer.removeAll() }
            return (nil, false)
        case Serial8250.lineControl:
            lineControl = value
        case Serial8250.modemControl:
            modemControl = value & 0x1F
        case Serial8250.scratch:
            scratch = value
        default:
            break
        }
        return (nil, false)
    }
}
