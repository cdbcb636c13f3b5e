import Foundation
import Testing
@testable import Network

/// The ring on one end of a SOCK_SEQPACKET socketpair (one frame per write, as on a
/// TAP); the test reads the other end. Needs a host that allows io_uring with
/// restrictions (Linux ≥ 5.10, `kernel.io_uring_disabled` = 0): where it does not,
/// the tests say so and skip, as the device then writes frame by frame.
@Suite struct TapWriteRingTests {
    static let ringsAllowed: Bool = {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds) == 0 else { return false }
        defer { close(fds[0]); close(fds[1]) }
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        do {
            _ = try TapWriteRing(fileDescriptor: fds[0])
            return true
        } catch {
            print("TapWriteRingTests: SKIPPED — this host gives no restricted io_uring (\(error))")
            return false
        }
    }()

    /// (device end, non-blocking; test end)
    private func pair() throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds) == 0)
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        return (fds[0], fds[1])
    }

    private func receive(_ fd: Int32) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return n >= 0 ? Array(buffer[0..<n]) : nil
    }

    @Test(.enabled(if: ringsAllowed)) func writesAFullBatchInOrderWithItsResults() throws {
        let (device, host) = try pair()
        defer { close(device); close(host) }
        let ring = try TapWriteRing(fileDescriptor: device)
        // Each frame in two pieces, as a header and a packet in separate descriptors.
        let frames = (0..<TapWriteRing.capacity).map { i in [UInt8](repeating: UInt8(i), count: 100 + 7 * i) }
        var storage = frames.map { f in f.withUnsafeBytes { b in UnsafeMutableRawPointer.allocate(byteCount: b.count, alignment: 1) } }
        defer { storage.forEach { $0.deallocate() } }
        let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: 2 * frames.count)
        defer { iovecs.deallocate() }
        for (i, f) in frames.enumerated() {
            f.withUnsafeBytes { storage[i].copyMemory(from: $0.baseAddress!, byteCount: f.count) }
            iovecs[2 * i] = iovec(iov_base: storage[i], iov_len: 12)
            iovecs[2 * i + 1] = iovec(iov_base: storage[i] + 12, iov_len: f.count - 12)
            #expect(ring.queue(iovecs + 2 * i, count: 2, tag: UInt64(1000 + i)))
        }
        #expect(!ring.queue(iovecs, count: 2, tag: 0), "one more than capacity")
        try ring.submitAndWait()
        var results: [(UInt64, Int32)] = []
        while let r = ring.reap() { results.append((r.tag, r.result)) }
        #expect(results.map(\.0).sorted() == (0..<frames.count).map { UInt64(1000 + $0) })
        for (tag, result) in results { #expect(Int(result) == frames[Int(tag) - 1000].count) }
        for f in frames { #expect(receive(host) == f) }  // whole frames, in queue order
        #expect(receive(host) == nil)
        // The ring is empty again: another batch goes through.
        #expect(ring.queue(iovecs, count: 2, tag: 7))
        try ring.submitAndWait()
        #expect(ring.reap()?.result == Int32(frames[0].count))
        #expect(receive(host) == frames[0])
    }

    @Test(.enabled(if: ringsAllowed)) func aFailedWriteDoesNotStopTheOthers() throws {
        let (device, host) = try pair()
        defer { close(device) }
        let ring = try TapWriteRing(fileDescriptor: device)
        var byte: UInt8 = 1
        var one = iovec(iov_base: &byte, iov_len: 1)
        close(host)  // every write now fails with EPIPE
        #expect(ring.queue(&one, count: 1, tag: 1) && ring.queue(&one, count: 1, tag: 2))
        try ring.submitAndWait()
        var results: [Int32] = []
        while let r = ring.reap() { results.append(r.result) }
        #expect(results == [-EPIPE, -EPIPE])
    }

    @Test(.enabled(if: ringsAllowed)) func aBlockingDescriptorGetsNoRing() throws {
        // Writes to a blocking file may go to kernel workers and leave out of order.
        var fds: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        #expect(throws: TapError.system(operation: "io_uring set-up", name: "fd \(fds[0])", errno: EINVAL)) {
            try TapWriteRing(fileDescriptor: fds[0])
        }
    }
}
