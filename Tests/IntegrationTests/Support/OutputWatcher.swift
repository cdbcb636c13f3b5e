import Foundation

/// Collects what a child writes to `fd` (a pipe's read end or a pty master) on a
/// background thread, so a test can wait for a line while the child runs.
// Sound because: `data` and `stopping` are touched only with `lock` held; the rest is `let`.
final class OutputWatcher: @unchecked Sendable {
    private let fd: Int32
    private let lock = NSLock()
    private var data = Data()
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)

    /// Starts reading at once; the caller keeps `fd` open until `stop()`.
    init(fd: Int32) {
        self.fd = fd
        Thread.detachNewThread { [self] in
            self.readUntilStopped()
            self.done.signal()
        }
    }

    var text: String {
        lock.lock(); defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    /// Waits until the output contains `needle`; false after `timeout` seconds.
    func waitFor(_ needle: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if text.contains(needle) { return true }
            usleep(20_000)
        }
        return text.contains(needle)
    }

    /// Ends the reader thread (within ~0.1 s); the output read so far stays.
    func stop() {
        lock.lock(); stopping = true; lock.unlock()
        done.wait()
    }

    private func readUntilStopped() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            lock.lock(); let quit = stopping; lock.unlock()
            if quit { return }
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&ready, 1, 100)
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { if r < 0 { return } else { continue } }
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard n > 0 else { return }  // EOF, or EIO once no process has the pty slave
            lock.lock(); data.append(contentsOf: buffer[0..<n]); lock.unlock()
        }
    }
}
