import Devices
import Events
import Foundation
import GuestMemory
import Network
import Storage
@testable import Virtio

// A guest driver that writes anything: the fuzzed bytes are guest RAM holding a split
// virtqueue (descriptor table at 0x0, avail ring at 0x800, used ring at 0xa00) and
// whatever the descriptors point at. A virtio-blk device (raw disk, synchronous I/O)
// or a virtio-net device is reset, negotiated, given the queue and started; it then
// takes, parses and answers every chain the avail ring offers. The net device's
// "TAP" is one end of a SOCK_SEQPACKET socketpair (as in VirtioNetBatchTests) with
// two frames waiting, so the receive path (readv into the fuzzed chains) runs too.
// Input: [device/features][queue size][avail notifications][guest RAM…].
//   byte 0: bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 drop FLUSH (write-through), bit 7 net
//   byte 1: queue size 1 << (b & 7); with bit 7 the raw value b & 0x7f (maybe invalid)
private let ramSize = 0x10000
// Two adjacent regions: buffers and descriptors may straddle them.
private let memory = try! GuestMemory(ranges: [(GuestAddress(0), UInt64(ramSize / 2)),
                                                (GuestAddress(UInt64(ramSize / 2)), UInt64(ramSize / 2))])
private let disk: DiskImage = {
    let path = "/dev/shm/skiff-fuzz-virtqueue-\(getpid()).raw"
    FileManager.default.createFile(atPath: path, contents: Data(count: 64 << 10))
    let image = try! DiskImageOpener.open(path: path, format: .raw)
    unlink(path)  // stays open; nothing is left behind
    return image
}()
/// The device's end and the host's end of the fake TAP.
private let tapPair: (device: Int32, host: Int32) = {
    var fds: [Int32] = [-1, -1]
    precondition(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
    return (fds[0], fds[1])
}()
private let tap = Tap(adopting: tapPair.device, name: "fuzz")
/// A vnet header and a 1500-byte frame, then a runt: a full frame spreads over
/// (mergeable) chains, the runt is dropped.
private let frames: [[UInt8]] = [[UInt8](repeating: 0, count: 12) + (0..<1500).map { UInt8(truncatingIfNeeded: $0) },
                                 [UInt8](repeating: 0, count: 8)]

/// Empties one end of the socketpair (what the device sent, or frames it left).
private func drain(_ fd: Int32) {
    var sink = [UInt8](repeating: 0, count: 2048)
    while sink.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
}
private let mac = try! MACAddress(parsing: "52:54:00:12:34:56")

private final class Line: InterruptLine, @unchecked Sendable { func trigger() {} }
private let line = Line()

private func write32(_ transport: VirtioMMIOTransport, _ offset: UInt64, _ value: UInt32) {
    withUnsafeBytes(of: value.littleEndian) { transport.write(offset: offset, data: $0) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVirtqueue(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let flags = data[0], sizeByte = data[1]
    let isNet = flags & 0x80 != 0
    if isNet {
        drain(tapPair.device)
        for f in frames { _ = f.withUnsafeBytes { send(tapPair.host, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) } }
    }
    let ram = try! memory.buffer(at: GuestAddress(0), length: UInt64(ramSize / 2))
    let ram2 = try! memory.buffer(at: GuestAddress(UInt64(ramSize / 2)), length: UInt64(ramSize / 2))
    ram.initializeMemory(as: UInt8.self, repeating: 0)
    ram2.initializeMemory(as: UInt8.self, repeating: 0)
    let content = UnsafeRawBufferPointer(start: data + 2, count: min(size - 2, ramSize))
    try! memory.write(content, to: GuestAddress(0))

    let device: VirtioDevice
    if isNet {
        device = VirtioNet(tap: tap, mac: mac, queueSize: 128)
    } else {
        device = try! VirtioBlock(image: disk, serial: "fuzz", queueSize: 128, synchronousIO: true)
    }
    let loop = try! EventLoop()
    let transport = try! VirtioMMIOTransport(device: device, memory: memory, interrupt: line, eventLoop: loop)
    var features = transport.offeredFeatures
    if flags & 1 == 0 { features &= ~VirtioFeature.ringIndirectDesc }
    if flags & 2 == 0 { features &= ~VirtioFeature.ringEventIdx }
    if flags & 4 != 0 { features &= ~VirtioBlock.Feature.flush }
    write32(transport, 0x70, 0)
    write32(transport, 0x70, VirtioStatus.acknowledge | VirtioStatus.driver)
    write32(transport, 0x24, 0); write32(transport, 0x20, UInt32(truncatingIfNeeded: features))
    write32(transport, 0x24, 1); write32(transport, 0x20, UInt32(truncatingIfNeeded: features >> 32))
    write32(transport, 0x70, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)
    let queueSize = sizeByte & 0x80 != 0 ? UInt32(sizeByte & 0x7f) : UInt32(1) << (sizeByte & 7)
    // Net: the receive queue gets the same rings as transmit (the frames waiting land in them).
    for queue: UInt32 in isNet ? [0, 1] : [0] {
        write32(transport, 0x30, queue)
        write32(transport, 0x38, queueSize)
        write32(transport, 0x80, 0x0); write32(transport, 0x84, 0)
        write32(transport, 0x90, 0x800); write32(transport, 0x94, 0)
        write32(transport, 0xa0, 0xa00); write32(transport, 0xa4, 0)
        write32(transport, 0x44, 1)
    }
    write32(transport, 0x70, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK | VirtioStatus.driverOK)
    // One round of the event loop on this thread: DRIVER_OK queued "process what is posted".
    loop.stop()
    try! loop.run()
    if let block = device as? VirtioBlock {
        // Synchronous completions signalled during that round.
        transport.lock.lock()
        block.engine.processCompletions()
        block.signalIfCompleted()
        transport.lock.unlock()
    }
    write32(transport, 0x70, 0)  // reset: drains the disk engine, unwatches the TAP
    if isNet { drain(tapPair.host) }
    return 0
}

// libFuzzer's own main is not linked (SwiftPM points `main` at this file's top-level code).
@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(_ argc: UnsafeMutablePointer<CInt>,
                       _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                       _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
var argc = CommandLine.argc, argv = CommandLine.unsafeArgv
exit(runDriver(&argc, &argv, { fuzzVirtqueue($0, $1) }))
