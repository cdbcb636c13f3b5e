import Devices
import Events
#if canImport(Glibc)
import Glibc
#endif

/// Feeds host stdin to the guest's UART on the event loop. Bytes the UART's
/// FIFO cannot take yet wait here until the guest drains it. On a terminal,
/// Ctrl-A x quits (as in QEMU); Ctrl-A Ctrl-A sends one Ctrl-A.
final class ConsoleInput: @unchecked Sendable {
    private let serial: Serial8250
    private let loop: EventLoop
    private let escapeEnabled: Bool
    private let onQuit: () -> Void
    private var pending: [UInt8] = []
    private var sawEscape = false
    private var watching = false

    static let escape: UInt8 = 0x01  // Ctrl-A

    init(serial: Serial8250, loop: EventLoop, escapeEnabled: Bool, onQuit: @escaping () -> Void) {
        self.serial = serial
        self.loop = loop
        self.escapeEnabled = escapeEnabled
        self.onQuit = onQuit
    }

    /// Starts watching stdin; quietly does nothing when stdin is closed or not pollable.
    func start() {
        let flags = fcntl(STDIN_FILENO, F_GETFL)
        guard flags >= 0 else { return }
        _ = fcntl(STDIN_FILENO, F_SETFL, flags | O_NONBLOCK)
        serial.onReceiveDrained = { [weak self] in
            guard let self else { return }
            self.loop.execute { self.flush() }
        }
        watching = (try? loop.add(STDIN_FILENO) { [weak self] _ in self?.readInput() }) != nil
    }

    /// Stops reading stdin (call after the event loop has stopped).
    func stop() {
        if watching { loop.remove(STDIN_FILENO) }
        watching = false
        serial.onReceiveDrained = nil
    }

    private func readInput() {
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(STDIN_FILENO, &buffer, buffer.count)
        if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) {
            loop.remove(STDIN_FILENO)  // EOF: nothing more will come
            watching = false
            return
        }
        guard n > 0 else { return }
        for byte in buffer[0..<n] { accept(byte) }
        flush()
    }

    private func accept(_ byte: UInt8) {
        guard escapeEnabled else { pending.append(byte); return }
        if sawEscape {
            sawEscape = false
            if byte == UInt8(ascii: "x") { onQuit(); return }
            pending.append(byte)  // Ctrl-A Ctrl-A → one Ctrl-A; Ctrl-A other → both dropped but the other
            return
        }
        if byte == ConsoleInput.escape { sawEscape = true; return }
        pending.append(byte)
    }

    private func flush() {
        guard !pending.isEmpty else { return }
        let taken = serial.enqueueInput(pending)
        pending.removeFirst(taken)
    }
}
