import Foundation
import GuestMemory
import Network
import Testing
@testable import Virtio

/// Whether this host gives the device its transmit ring (io_uring with restrictions).
let ringsAllowedHere: Bool = {
    var fds: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds) == 0 else { return false }
    defer { close(fds[0]); close(fds[1]) }
    _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
    return (try? TapWriteRing(fileDescriptor: fds[0])) != nil
}()

/// A virtio-net device whose "TAP" is one end of a SOCK_SEQPACKET socketpair: one
/// frame per read and write, like a TAP, and no privileges needed. The test plays
/// the host on the other end and the guest driver through the transport.
final class FakeTapHarness {
    static let rxBase: UInt64 = 0x10000, txBase: UInt64 = 0x20000
    static let rxData: UInt64 = 0x100000, txData: UInt64 = 0x200000

    let host: Int32
    let memory: GuestMemory
    let loop: RunningLoop
    let irq = FakeInterruptLine()
    let device: VirtioNet
    let transport: VirtioMMIOTransport
    let driver: FakeDriver
    let rx: FakeGuestQueue
    let tx: FakeGuestQueue

    /// - Parameter batchedTransmit: as `VirtioNet(batchedTransmit:)`.
    init(features: UInt64, batchedTransmit: Bool = true) throws {
        var fds: [Int32] = [-1, -1]
        let type = Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw OptionError("socketpair: errno \(errno)") }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK) // the device's end, as a TAP is
        host = fds[1]
        device = VirtioNet(tap: Tap(adopting: fds[0], name: "fake"), mac: guestMAC, queueSize: 16,
                           batchedTransmit: batchedTransmit)
        memory = try makeGuestMemory()
        loop = try RunningLoop()
        transport = try VirtioMMIOTransport(device: device, memory: memory, interrupt: irq, eventLoop: loop.loop)
        driver = FakeDriver(transport: transport)
        rx = try FakeGuestQueue(memory: memory, size: 16, base: Self.rxBase)
        tx = try FakeGuestQueue(memory: memory, size: 16, base: Self.txBase)
        guard driver.negotiate(features) else { throw OptionError("FEATURES_OK refused") }
        driver.setUpQueue(0, rx)
        driver.setUpQueue(1, tx)
    }

    deinit {
        driver.write32(0x70, 0)
        close(host)
    }

    func start() { driver.driverOK() }

    /// Host → guest: one frame (vnet header + bytes) written to the fake TAP.
    func hostSends(_ frame: [UInt8]) throws {
        let n = frame.withUnsafeBytes { send(host, $0.baseAddress, $0.count, 0) }
        guard n == frame.count else { throw OptionError("send: \(n), errno \(errno)") }
    }

    /// Guest → host: the next frame the device wrote, if any.
    func hostReceives() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 70_000)
        let n = buffer.withUnsafeMutableBytes { recv(host, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return n > 0 ? Array(buffer[0..<n]) : nil
    }

    /// Posts `count` receive chains of one `size`-byte buffer each (buffer slot = avail index % 16).
    func postReceiveBuffers(_ count: Int, size: UInt32, notify: Bool = true) throws {
        for _ in 0..<count {
            try rx.post([(Self.rxData + UInt64(rx.availIdx % 16) * 0x1000, size, true)])
        }
        if notify { driver.write32(0x50, 0) }
    }

    func takeReceived() throws -> [(head: UInt32, length: UInt32)] { try rx.takeUsed() }

    func receivedBytes(_ element: (head: UInt32, length: UInt32)) throws -> [UInt8] { try rx.firstBufferBytes(element) }

    func onLoop<T>(_ body: () -> T) -> T {
        transport.lock.lock(); defer { transport.lock.unlock() }
        return body()
    }
}

/// A frame as the TAP hands it over: a 12-byte vnet header (num_buffers left
/// 0xeeee, as the TAP leaves guest memory there) and `length` payload bytes.
private func frame(_ seed: UInt8, length: Int) -> [UInt8] {
    [UInt8](repeating: 0, count: 10) + [0xee, 0xee] + (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
}

/// `bytes` with num_buffers (header bytes 10–11) set to `n`.
private func withNumBuffers(_ bytes: [UInt8], _ n: UInt16) -> [UInt8] {
    var b = bytes
    b[10] = UInt8(n & 0xff)
    b[11] = UInt8(n >> 8)
    return b
}

@Suite(.serialized) struct VirtioNetBatchTests {
    @Test func receivesABatchWithOneInterrupt() throws {
        let h = try FakeTapHarness(features: VirtioFeature.version1)
        try h.postReceiveBuffers(12, size: 2048, notify: false)
        // Ten frames wait in the TAP before the device starts: one wake-up takes them all.
        let frames = (0..<10).map { frame(UInt8($0), length: 60 + 160 * $0) }
        for f in frames { try h.hostSends(f) }
        h.memory.writtenPages.clear()
        h.start()
        #expect(waitUntil { h.rx.usedIdx == 10 })
        usleep(20_000) // a second wake-up (the TAP's readiness) must find nothing more to do
        let received = try h.takeReceived()
        #expect(received.map(\.length) == frames.map { UInt32($0.count) })
        #expect(received.map(\.head) == Array(0..<10)) // in order, one chain each
        for (element, f) in zip(received, frames) {
            #expect(try h.receivedBytes(element) == withNumBuffers(f, 1))
        }
        #expect(h.irq.count == 1)
        // Small frames: each read into the staging buffer and copied into its chain.
        #expect(h.onLoop { h.device.rxFrames == 10 && h.device.rxCopied == 10 && h.device.rxDropped == 0 && h.device.rxStaged == 0 })
        // Written through host views: the pages must still be marked for migration.
        for i in 0..<10 { #expect(h.memory.writtenPages.isSet(Int((FakeTapHarness.rxData >> 12) + UInt64(i)))) }
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
    }

    @Test func stopsReadingTheTapWithoutBuffersAndResumes() throws {
        let h = try FakeTapHarness(features: VirtioFeature.version1 | VirtioFeature.ringEventIdx)
        try h.postReceiveBuffers(3, size: 2048, notify: false)
        let frames = (0..<5).map { frame(UInt8(100 + $0), length: 1000) }
        for f in frames { try h.hostSends(f) }
        h.start()
        #expect(waitUntil { h.rx.usedIdx == 3 })
        #expect(waitUntil { h.onLoop { h.device.isReceivePaused } })
        // The two frames left were not read (no frame is read that cannot be placed).
        var peek: UInt8 = 0
        #expect(recv(h.device.tap.fileDescriptor, &peek, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 1)
        #expect(h.onLoop { h.device.rxFrames == 3 && h.device.rxDropped == 0 })
        // The device asked to hear about the next buffer (avail_event = the driver's index).
        #expect(h.rx.availEvent == h.rx.availIdx)
        try h.postReceiveBuffers(4, size: 2048)
        #expect(waitUntil { h.rx.usedIdx == 5 })
        let received = try h.takeReceived()
        for (element, f) in zip(received, frames) {
            #expect(try h.receivedBytes(element) == withNumBuffers(f, 1))
        }
        #expect(waitUntil { h.onLoop { !h.device.isReceivePaused } })
        #expect(h.onLoop { h.device.rxFrames == 5 && h.device.rxDropped == 0 })
    }

    @Test func spreadsFramesOverMergeableBuffersAndStagesOnlyWhatDoesNotFit() throws {
        let h = try FakeTapHarness(features: VirtioFeature.version1 | VirtioNet.Feature.mergeableRxBuffers)
        try h.postReceiveBuffers(16, size: 256, notify: false)
        let small = frame(1, length: 1000)  // 1012 bytes: 4 chains, read directly
        let large = frame(2, length: 3000)  // 3012 bytes: more than popped ahead for a 1012-byte frame
        try h.hostSends(small)
        try h.hostSends(large)
        h.start()
        #expect(waitUntil { h.rx.usedIdx == 16 })
        let received = try h.takeReceived()
        #expect(received.map(\.length) == [256, 256, 256, 244] + [UInt32](repeating: 256, count: 11) + [196])
        let first = try received.prefix(4).flatMap { try h.receivedBytes($0) }
        let second = try received.dropFirst(4).flatMap { try h.receivedBytes($0) }
        #expect(first == withNumBuffers(small, 4))
        #expect(second == withNumBuffers(large, 12))
        #expect(h.onLoop { h.device.rxFrames == 2 && h.device.rxStaged == 1 && h.device.rxDropped == 0 })
    }

    @Test func readsLargeFramesStraightIntoGuestBuffersAndCopiesSmallOnes() throws {
        let h = try FakeTapHarness(features: VirtioFeature.version1 | VirtioNet.Feature.mergeableRxBuffers)
        try h.postReceiveBuffers(16, size: 4096, notify: false)
        // Which way each goes depends on the frame before it (bounceLimit = 4096):
        // copied; staged (one chain popped for it, the frame wants two); readv into
        // two chains; readv into one; copied again.
        let frames = [frame(1, length: 100), frame(2, length: 6000), frame(3, length: 7000),
                      frame(4, length: 200), frame(5, length: 300)]
        let chains = [1, 2, 2, 1, 1]
        for f in frames { try h.hostSends(f) }
        h.memory.writtenPages.clear()
        h.start()
        #expect(waitUntil { h.rx.usedIdx == 7 })
        var received = try h.takeReceived()[...]
        for (f, n) in zip(frames, chains) {
            let elements = received.prefix(n)
            received = received.dropFirst(n)
            #expect(elements.map(\.length).reduce(0, +) == UInt32(f.count))
            #expect(try elements.flatMap { try h.receivedBytes($0) } == withNumBuffers(f, UInt16(n)))
        }
        #expect(h.onLoop { h.device.rxFrames == 5 && h.device.rxCopied == 2 && h.device.rxStaged == 1 && h.device.rxDropped == 0 })
        // Every page a frame went to is marked for migration, whichever way it went
        // (chain slots 0–6 are pages 0–6 from rxData).
        for i in 0..<7 { #expect(h.memory.writtenPages.isSet(Int((FakeTapHarness.rxData >> 12) + UInt64(i)))) }
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
    }

    @Test func dropsAFrameTooLargeForOneChainAndKeepsTheChain() throws {
        let h = try FakeTapHarness(features: VirtioFeature.version1)
        try h.postReceiveBuffers(1, size: 512, notify: false)
        let big = frame(3, length: 600)
        let next = frame(4, length: 100)
        try h.hostSends(big)
        try h.hostSends(next)
        h.start()
        #expect(waitUntil { h.rx.usedIdx == 1 })
        let received = try h.takeReceived()
        #expect(received.map(\.head) == [0] && received[0].length == 112)
        #expect(try h.receivedBytes(received[0]) == withNumBuffers(next, 1))
        #expect(h.onLoop { h.device.rxDropped == 1 && h.device.rxFrames == 1 })
    }

    /// Batched: one io_uring submit for the notification's frames (where the host
    /// allows the ring; `TapWriteRingTests` say when it does not); unbatched: one
    /// write/writev each. The guest sees the same either way.
    @Test(arguments: [true, false])
    func sendsEveryChainOfANotificationWithOneInterrupt(batched: Bool) throws {
        let h = try FakeTapHarness(features: VirtioFeature.version1 | VirtioFeature.ringEventIdx, batchedTransmit: batched)
        #expect(h.device.transmitsInBatches == (batched && ringsAllowedHere))
        h.start()
        #expect(waitUntil { h.onLoop { h.device.context != nil } })
        var sent: [[UInt8]] = []
        for i in 0..<7 { // 11 of the ring's 16 descriptors
            let f = frame(UInt8(50 + i), length: 100 + 100 * i)
            let at = FakeTapHarness.txData + UInt64(i) * 0x1000
            try h.memory.write(f, to: GuestAddress(at))
            if i % 2 == 0 {
                // Header and frame in separate descriptors, as Linux sends them (writev).
                try h.tx.post([(at, 12, false), (at + 12, UInt32(f.count - 12), false)])
            } else {
                // One descriptor, as the firmware sends them (write).
                try h.tx.post([(at, UInt32(f.count), false)])
            }
            sent.append(f)
        }
        h.driver.write32(0x50, 1)
        #expect(waitUntil { h.tx.usedIdx == 7 })
        var got: [[UInt8]] = []
        #expect(waitUntil {
            while let f = h.hostReceives() { got.append(f) }
            return got.count == 7
        })
        #expect(got == sent)
        #expect(h.irq.count == 1)
        #expect(h.onLoop { h.device.txFrames == 7 && h.device.txDropped == 0 })
        // Drained and re-armed: avail_event asks for the driver's next chain.
        #expect(h.tx.availEvent == h.tx.availIdx)
    }

    /// A malformed chain between good ones is dropped without a write; the frames
    /// around it still leave in order, and every chain comes back in order.
    @Test(arguments: [true, false])
    func aMalformedChainInABatchIsDroppedAlone(batched: Bool) throws {
        let h = try FakeTapHarness(features: VirtioFeature.version1, batchedTransmit: batched)
        h.start()
        #expect(waitUntil { h.onLoop { h.device.context != nil } })
        let first = frame(1, length: 300), last = frame(3, length: 400)
        try h.memory.write(first, to: GuestAddress(FakeTapHarness.txData))
        try h.memory.write(last, to: GuestAddress(FakeTapHarness.txData + 0x1000))
        try h.tx.post([(FakeTapHarness.txData, UInt32(first.count), false)])
        try h.tx.post([(0x7fff_0000, 200, false)])  // outside guest RAM
        try h.tx.post([(FakeTapHarness.txData + 0x1000, UInt32(last.count), false)])
        h.driver.write32(0x50, 1)
        #expect(waitUntil { h.tx.usedIdx == 3 })
        #expect(try h.tx.takeUsed().map(\.head) == [0, 1, 2])
        var got: [[UInt8]] = []
        #expect(waitUntil {
            while let f = h.hostReceives() { got.append(f) }
            return got.count == 2
        })
        #expect(got == [first, last])
        #expect(h.onLoop { h.device.txFrames == 2 && h.device.txDropped == 1 })
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
    }

    /// A queue restored with EVENT_IDX must not wait for a notification the driver
    /// already decided not to send: the device looks at avail again after restore.
    @Test func restoredQueueSeesChainsPostedWithoutANotification() throws {
        let h = try FakeTapHarness(features: VirtioFeature.version1 | VirtioFeature.ringEventIdx)
        // The device's first look at the queue (after DRIVER_OK) rewrites avail_event: wait for it,
        // so the chain below is not taken by this device.
        try h.memory.store(UInt16(0xffff), to: GuestAddress(h.tx.usedRing + 4 + 8 * 16))
        h.start()
        #expect(waitUntil { h.tx.availEvent == 0 })
        let f = frame(9, length: 200)
        try h.memory.write(f, to: GuestAddress(FakeTapHarness.txData))
        // Posted, no notification (as if avail_event had said none was needed), then saved.
        try h.tx.post([(FakeTapHarness.txData, UInt32(f.count), false)])
        let saved = h.transport.saveState()
        // A second device on the same memory and TAP pair takes over the state.
        var fds: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds) == 0)
        defer { close(fds[1]) }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        let device = VirtioNet(tap: Tap(adopting: fds[0], name: "fake2"), mac: guestMAC, queueSize: 16)
        let transport = try VirtioMMIOTransport(device: device, memory: h.memory, interrupt: FakeInterruptLine(), eventLoop: h.loop.loop)
        try transport.restoreState(saved)
        var buffer = [UInt8](repeating: 0, count: 4096)
        var n = -1
        #expect(waitUntil {
            n = buffer.withUnsafeMutableBytes { recv(fds[1], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            return n > 0
        })
        #expect(n > 0 && Array(buffer[0..<max(n, 0)]) == f)
        #expect(h.tx.usedIdx == 1)
        FakeDriver(transport: transport).write32(0x70, 0) // stop it before its TAP goes away
    }
}
