import Foundation
@testable import SecureChannel

/// A connected AF_UNIX stream pair; the tests close what they do not hand to a channel.
func socketPair() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds)
    precondition(rc == 0, "socketpair failed")
    return (fds[0], fds[1])
}

/// Runs `body` on its own thread; `join` waits for its result.
// Sound because: `result` is written before `done.signal()` and read after `done.wait()`.
final class Spawned<T>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<T, Error>?

    init(_ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            result = Result { try body() }
            done.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    func join() -> Result<T, Error> {
        done.wait()
        return result!
    }
}

/// Sits between two sockets and copies bytes both ways, recording them, and
/// optionally changing one byte or cutting the stream at an offset: the
/// network attacker of the tests.
// Sound because: `recorded` and `threads` are touched only with `lock` held; the rest is `let`.
final class Relay: @unchecked Sendable {
    enum Direction: Int { case initiatorToResponder, responderToInitiator }
    struct Tamper {
        var direction: Direction
        var offset: Int
        /// nil: cut the stream there (both ways); else XOR the byte with this.
        var xor: UInt8?
    }

    let initiatorEnd: Int32, responderEnd: Int32
    private let lock = NSLock()
    private var recorded: [[UInt8]] = [[], []]
    private var threads: [Spawned<Void>] = []
    private let tamper: Tamper?

    /// The fds to give the initiator and the responder.
    let initiatorSocket: Int32, responderSocket: Int32

    init(tamper: Tamper? = nil) {
        self.tamper = tamper
        (initiatorSocket, initiatorEnd) = socketPair()
        (responderSocket, responderEnd) = socketPair()
        threads = [Spawned { self.pump(.initiatorToResponder, from: self.initiatorEnd, to: self.responderEnd) },
                   Spawned { self.pump(.responderToInitiator, from: self.responderEnd, to: self.initiatorEnd) }]
    }

    func bytes(_ direction: Direction) -> [UInt8] {
        lock.lock(); defer { lock.unlock() }
        return recorded[direction.rawValue]
    }

    /// Waits for both directions to end (each ends at EOF or the cut).
    func finish() {
        for t in threads { _ = t.join() }
        close(initiatorEnd)
        close(responderEnd)
    }

    private func pump(_ direction: Direction, from: Int32, to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var offset = 0
        while true {
            var n = buffer.withUnsafeMutableBytes { recv(from, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            if let t = tamper, t.direction == direction, (offset..<offset + n).contains(t.offset) {
                if let xor = t.xor {
                    buffer[t.offset - offset] ^= xor
                } else {
                    n = t.offset - offset
                    sendAll(buffer, count: n, to: to)
                    record(direction, buffer[..<n])
                    break
                }
            }
            sendAll(buffer, count: n, to: to)
            record(direction, buffer[..<n])
            offset += n
        }
        // Pass the end on; a cut ends both directions, as a dropped connection does.
        shutdown(to, Int32(SHUT_WR))
        if tamper?.xor == nil && tamper?.direction == direction {
            shutdown(from, Int32(SHUT_RDWR))
            shutdown(to, Int32(SHUT_RDWR))
        }
    }

    private func record(_ direction: Direction, _ bytes: ArraySlice<UInt8>) {
        lock.lock(); recorded[direction.rawValue] += bytes; lock.unlock()
    }

    private func sendAll(_ buffer: [UInt8], count: Int, to fd: Int32) {
        var sent = 0
        while sent < count {
            let n = buffer.withUnsafeBytes { send(fd, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }
}

/// Handshakes both sides over `initiator`/`responder` fds (the responder on
/// its own thread) and returns both results.
func handshake(initiator: Int32, responder: Int32, initiatorKey: MigrationKey, responderKey: MigrationKey,
               timeout: Duration = .seconds(10)) -> (Result<SecureChannel, Error>, Result<SecureChannel, Error>) {
    let r = Spawned { try SecureChannel.responder(socket: responder, key: responderKey, timeout: timeout) }
    let i = Result { try SecureChannel.initiator(socket: initiator, key: initiatorKey, timeout: timeout) }
    return (i, r.join())
}

/// Deterministic bytes for round trips: a xorshift stream.
func patternBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    out.withUnsafeMutableBytes { raw in
        let words = raw.bindMemory(to: UInt64.self)
        for i in 0..<words.count {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            words[i] = state
        }
        for i in words.count * 8..<count { raw[i] = UInt8(truncatingIfNeeded: i) }
    }
    return out
}

extension SecureChannel {
    func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    func read(count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try read(into: $0) }
        return out
    }
}

/// memcmp, since comparing 64 MiB arrays element by element is slow in a debug build.
func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, a.count) == 0 } }
}
