import Foundation

/// A TCP relay between a migration source and its destination that cuts both
/// connections once `cutAfter` bytes went from source to destination: the
/// "connection dropped at a random point" of the failure tests. With
/// `recording`, it also keeps every byte the source sent (what an
/// eavesdropper on the link would see).
// Sound because: `forwarded`, `cut` (and the recordings) are touched only with `lock` held; the rest is `let`.
final class CuttingRelay: @unchecked Sendable {
    let port: UInt16
    private let listener: Int32
    private let target: UInt16
    private let cutAfter: Int
    private let lock = NSLock()
    private var forwarded = 0
    private(set) var cut = false
    private let recording: Bool
    private var recorded: [UInt8] = []
    private var finished = false

    init(to target: UInt16, cutAfter: Int = .max, recording: Bool = false) throws {
        self.target = target
        self.cutAfter = cutAfter
        self.recording = recording
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        guard withUnsafePointer(to: &address, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }) == 0,
              listen(fd, 1) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        port = UInt16(bigEndian: address.sin_port)
        Thread.detachNewThread { [self] in serve() }
    }

    deinit { close(listener) }

    /// The bytes from source to destination so far, and whether both directions
    /// have ended (the recording is complete).
    var recordedBytes: (bytes: [UInt8], complete: Bool) { lock.withLock { (recorded, finished) } }

    /// Waits up to `timeout` seconds for the relayed connection to end.
    func waitUntilFinished(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if lock.withLock({ finished }) { return true }
            usleep(10_000)
        }
        return false
    }

    private static func loopback(_ port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        a.sin_port = port.bigEndian
        return a
    }

    private func serve() {
        let client = accept(listener, nil, nil)
        guard client >= 0 else { return }
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(target)
        guard withUnsafePointer(to: &address, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0 else { close(client); return }
        Thread.detachNewThread { [self] in pump(from: server, to: client, counted: false) }
        pump(from: client, to: server, counted: true)
        shutdown(client, Int32(SHUT_RDWR)); shutdown(server, Int32(SHUT_RDWR))
        close(client); close(server)
        lock.withLock { finished = true }
    }

    private func pump(from: Int32, to: Int32, counted: Bool) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var n = read(from, &buffer, buffer.count)
            guard n > 0 else { shutdown(to, Int32(SHUT_RDWR)); return }
            if counted {
                let left = lock.withLock { cutAfter - forwarded }
                if n >= left {
                    n = max(0, left)
                    if n > 0 { _ = write(to, buffer, n) }
                    lock.withLock { cut = true }
                    shutdown(from, Int32(SHUT_RDWR))
                    shutdown(to, Int32(SHUT_RDWR))
                    return
                }
                lock.withLock {
                    forwarded += n
                    if recording { recorded.append(contentsOf: buffer[0..<n]) }
                }
            }
            var done = 0
            while done < n {
                let w = buffer.withUnsafeBytes { write(to, $0.baseAddress! + done, n - done) }
                guard w > 0 else { shutdown(from, Int32(SHUT_RDWR)); return }
                done += w
            }
        }
    }
}
