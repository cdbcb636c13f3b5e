import CKVM
import Devices
import Events
#if canImport(Glibc)
import Glibc
#endif
import Posix

/// Feeds host stdin to the guest's UART on the event loop. On a terminal,
/// Ctrl-A x quits (as in QEMU); Ctrl-A Ctrl-A sends one Ctrl-A.
///
/// stdin's file status flags are never changed: its open file description is
/// shared with the user's shell (and, on a terminal, with our own stdout), so
/// O_NONBLOCK there would leak to both. Reads stay blocking instead, and happen
/// only when epoll reports the fd readable, which for a pipe or a terminal means
/// one `read` returns at once (data, EOF or an error).
///
/// The owner must keep this object for the VM's life and call `stop()` at teardown.
// Sound because: every `var` is touched only with `lock` held; `onQuit` is Machine.stop, which is thread-safe.
final class ConsoleInput: @unchecked Sendable {
    private enum Source {
        case none       // closed or unusable stdin
        case polled     // pipe, terminal, socket: watched by epoll
        case onDemand   // regular file, /dev/null: always readable, so read when the guest wants more
    }

    static let escape: UInt8 = 0x01  // Ctrl-A
    /// Input waiting for the UART FIFO on a terminal, beyond which typed bytes are
    /// dropped (a terminal is read even when the guest is not reading, so that
    /// Ctrl-A x always works).
    static let terminalBacklog = 64 * 1024
    static let readSize = 4096

    private let fd: Int32
    private let serial: Serial8250
    private let loop: EventLoop
    private let escapeEnabled: Bool
    private let onQuit: () -> Void

    // All state below is touched only with `lock` held.
    private let lock = ThreadLock()
    private var source = Source.none
    private var pending: [UInt8] = []
    private var sawEscape = false
    private var watching = false   // registered with the event loop
    private var finished = false   // EOF, hang-up or read error: nothing more will come
    private var stopped = false

    init(serial: Serial8250, loop: EventLoop, escapeEnabled: Bool, fd: Int32 = STDIN_FILENO,
         onQuit: @escaping () -> Void) {
        self.fd = fd
        self.serial = serial
        self.loop = loop
        self.escapeEnabled = escapeEnabled
        self.onQuit = onQuit
    }

    /// Starts reading; quietly does nothing when stdin is closed.
    func start() {
        serial.onReceiveDrained = { [weak self] in
            guard let self else { return }
            self.loop.execute { [weak self] in self?.guestDrained() }
        }
        lock.lock(); defer { lock.unlock() }
        guard !stopped, fcntl(fd, F_GETFD) >= 0 else { return }
        if watch() {
            source = .polled
        } else if errno == EPERM {  // epoll refuses regular files (and /dev/null)
            source = .onDemand
            loop.execute { [weak self] in self?.guestDrained() }
        }
    }

    /// Stops reading for good: the fd leaves the event loop and later events are ignored.
    /// Safe from any thread; when it returns, no read of stdin is in progress.
    func stop() {
        lock.lock(); defer { lock.unlock() }
        stopped = true
        unwatch()
    }

    /// True while stdin is registered with the event loop (for tests).
    var isWatching: Bool {
        lock.lock(); defer { lock.unlock() }
        return watching
    }

    // MARK: - Event loop side

    private func readable(_ events: UInt32) {
        lock.lock(); defer { lock.unlock() }
        guard !stopped, watching else { return }
        let n = readChunk()
        if n > 0 { deliver(); return }
        let hangUp = events & (UInt32(EPOLLHUP.rawValue) | UInt32(EPOLLERR.rawValue)) != 0
        if n < 0 && (errno == EINTR || errno == EAGAIN) && !hangUp { return }
        // EOF, hang-up or error: level-triggered epoll would report it forever.
        finished = true
        unwatch()
    }

    /// The guest emptied the UART FIFO (or, on demand, the first read): offer more.
    private func guestDrained() {
        lock.lock(); defer { lock.unlock() }
        guard !stopped else { return }
        deliver()
        guard pending.isEmpty, !finished else { return }
        switch source {
        case .polled where !watching:
            _ = watch()  // resume after a pause for a full FIFO
        case .onDemand:
            let n = readChunk()
            if n > 0 { deliver() } else if n == 0 || (errno != EINTR && errno != EAGAIN) { finished = true }
        default:
            break
        }
    }

    // MARK: - With the lock held

    /// One `read` into `pending`; returns what `read` returned.
    private func readChunk() -> Int {
        var buffer = [UInt8](repeating: 0, count: ConsoleInput.readSize)
        let n = read(fd, &buffer, buffer.count)
        for byte in buffer[0..<max(n, 0)] { accept(byte) }
        return n
    }

    private func accept(_ byte: UInt8) {
        guard escapeEnabled else { pending.append(byte); return }
        if sawEscape {
            sawEscape = false
            if byte == UInt8(ascii: "x") { onQuit(); return }
            append(byte)  // Ctrl-A Ctrl-A → one Ctrl-A; Ctrl-A other → just the other
            return
        }
        if byte == ConsoleInput.escape { sawEscape = true; return }
        append(byte)
    }

    private func append(_ byte: UInt8) {
        if pending.count < ConsoleInput.terminalBacklog { pending.append(byte) }
    }

    /// Moves what fits into the UART FIFO. A pipe is paused while input waits, so
    /// a fast producer cannot grow `pending` without bound; a terminal never is.
    private func deliver() {
        if !pending.isEmpty {
            pending.removeFirst(serial.enqueueInput(pending))
        }
        if !pending.isEmpty && source == .polled && !escapeEnabled { unwatch() }
    }

    private func watch() -> Bool {
        guard !watching else { return true }
        do {
            try loop.add(fd) { [weak self] events in self?.readable(events) }
        } catch let failure as EventLoop.Failure {
            errno = failure.errno
            return false
        } catch {
            return false
        }
        watching = true
        return true
    }

    private func unwatch() {
        guard watching else { return }
        loop.remove(fd)
        watching = false
    }
}
