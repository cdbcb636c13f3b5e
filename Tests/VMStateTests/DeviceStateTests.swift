import Devices
import Events
import Foundation
import GuestMemory
import Storage
import Testing
@testable import Virtio
@testable import VMState

/// Device state taken from real device objects and put back, with the backend
/// identity checked; and the serial state round trip.
@Suite struct DeviceStateTests {
    final class Line: InterruptLine { func trigger() {} }

    /// A virtio-blk transport over a raw image of `sectors` sectors.
    final class Disk {
        let temp = TemporaryDirectory()
        let loop: EventLoop
        let memory: GuestMemory
        let device: VirtioBlock
        let transport: VirtioMMIOTransport

        init(sectors: Int = 2048, readOnly: Bool = false) throws {
            let path = temp.child("disk.raw").path
            try Data(count: sectors * 512).write(to: URL(fileURLWithPath: path))
            loop = try EventLoop()
            memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
            device = try VirtioBlock(image: DiskImageOpener.open(path: path, format: .raw, readOnly: readOnly))
            transport = try VirtioMMIOTransport(device: device, memory: memory, interrupt: Line(), eventLoop: loop)
        }

        func newTransport() throws -> VirtioMMIOTransport {
            try VirtioMMIOTransport(device: device, memory: memory, interrupt: Line(), eventLoop: loop)
        }
    }

    /// Programs queue 0 the way a driver would, short of DRIVER_OK.
    static func program(_ t: VirtioMMIOTransport) {
        func w(_ offset: UInt64, _ value: UInt32) {
            withUnsafeBytes(of: value.littleEndian) { t.write(offset: offset, data: $0) }
        }
        w(0x70, 1); w(0x70, 3)                       // ACKNOWLEDGE, DRIVER
        w(0x24, 1); w(0x20, 1)                       // driver features, VERSION_1 (bit 32)
        w(0x70, 11)                                  // FEATURES_OK
        w(0x30, 0); w(0x38, 128)                     // queue 0, 128 entries
        w(0x80, 0x1_0000); w(0x90, 0x1_1000); w(0xA0, 0x1_2000)
        w(0x44, 1)                                   // QueueReady
    }

    @Test func blockStateRoundTripsThroughTheTransport() throws {
        let disk = try Disk()
        Self.program(disk.transport)
        let saved = try VirtioDeviceState(transport: disk.transport, mmioBase: 0xD000_0000, gsi: 5)
        #expect(saved.backend == .block(capacitySectors: 2048, readOnly: false))
        #expect(saved.transport.queues[0].size == 128 && saved.transport.queues[0].ready)
        try saved.validate(slot: 0)

        let decoded = try JSONDecoder().decode(VirtioDeviceState.self, from: JSONEncoder().encode(saved))
        let fresh = try disk.newTransport()
        try decoded.restore(into: fresh)
        #expect(fresh.saveState() == saved.transport)
    }

    @Test func aDifferentDiskIsRefused() throws {
        let disk = try Disk()
        Self.program(disk.transport)
        let saved = try VirtioDeviceState(transport: disk.transport, mmioBase: 0xD000_0000, gsi: 5)

        let smaller = try Disk(sectors: 1024)
        let e1 = try #require(throws: DeviceStateError.self) { try saved.restore(into: smaller.transport) }
        #expect(e1.message.contains("2048 sectors"))

        let readOnly = try Disk(readOnly: true)
        let e2 = try #require(throws: DeviceStateError.self) { try saved.restore(into: readOnly.transport) }
        #expect(e2.message.contains("read-only"))

        var net = saved
        net.backend = .net(mac: [2, 0, 0, 0, 0, 1])
        let e3 = try #require(throws: DeviceStateError.self) { try net.restore(into: disk.newTransport()) }
        #expect(e3.message.contains("type"))
    }

    @Test func queueAddressesOutsideMemoryAreRefusedOnRestore() throws {
        let disk = try Disk()
        Self.program(disk.transport)
        var saved = try VirtioDeviceState(transport: disk.transport, mmioBase: 0xD000_0000, gsi: 5)
        saved.transport.queues[0].usedRing = 1 << 40
        #expect(throws: DeviceStateError.self) { try saved.restore(into: disk.newTransport()) }
    }

    /// A network card over a TAP of its own in this namespace (gone when the device closes it).
    static let canMakeTap = getuid() == 0 && FileManager.default.fileExists(atPath: "/dev/net/tun")

    /// A virtio-net transport whose driver took CTRL_VQ + GUEST_ANNOUNCE and set up all three queues.
    static func runningCard() throws -> (VirtioNet, VirtioMMIOTransport, GuestMemory, EventLoop) {
        let card = try VirtioNet(config: NetDeviceConfig(tap: "skds\(getpid() % 100_000)x\(UInt16.random(in: 0...9999))"), queueSize: 16)
        let loop = try EventLoop()
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        let t = try VirtioMMIOTransport(device: card, memory: memory, interrupt: Line(), eventLoop: loop)
        func w(_ offset: UInt64, _ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { t.write(offset: offset, data: $0) } }
        let features = VirtioNet.Feature.status | VirtioNet.Feature.controlQueue | VirtioNet.Feature.guestAnnounce
        w(0x70, 1); w(0x70, 3)
        w(0x24, 0); w(0x20, UInt32(features)); w(0x24, 1); w(0x20, 1)
        w(0x70, 11)
        for q: UInt32 in 0..<3 {
            let base = 0x1_0000 + q * 0x1_0000
            w(0x30, q); w(0x38, 16); w(0x80, base); w(0x90, base + 0x1000); w(0xA0, base + 0x2000); w(0x44, 1)
        }
        w(0x70, 15)
        return (card, t, memory, loop)
    }

    /// The driver resets the card behind `t`: its TAP watch goes, so another transport can take the card.
    static func release(_ t: VirtioMMIOTransport) {
        withUnsafeBytes(of: UInt32(0)) { t.write(offset: 0x70, data: $0) }
    }

    @Test(.enabled(if: canMakeTap, "needs root and /dev/net/tun for a TAP"))
    func netAnnounceStatusTravelsWithTheState() throws {
        let (card, transport, memory, loop) = try Self.runningCard()
        #expect(transport.withDevice { _ in card.requestAnnounce() } == .requested)
        let saved = try VirtioDeviceState(transport: transport, mmioBase: 0xD000_1000, gsi: 6)
        #expect(saved.net == .init(announcePending: true, offersControlQueue: true))
        #expect(saved.transport.queues.count == 3 && saved.transport.queues[2].ready)

        let decoded = try JSONDecoder().decode(VirtioDeviceState.self, from: JSONEncoder().encode(saved))
        Self.release(transport)
        let fresh = try VirtioMMIOTransport(device: card, memory: memory, interrupt: Line(), eventLoop: loop)
        try decoded.restore(into: fresh)
        #expect(fresh.withDevice { _ in card.isAnnouncePending })
        var status: UInt16 = 0
        withUnsafeMutableBytes(of: &status) { fresh.read(offset: 0x106, into: $0) }
        #expect(status == VirtioNet.Status.linkUp | VirtioNet.Status.announce)
        #expect(fresh.saveState() == saved.transport)
    }

    @Test(.enabled(if: canMakeTap, "needs root and /dev/net/tun for a TAP"))
    func aNetCardFromAVersion1StateKeepsItsFeatureSet() throws {
        let (card, transport, memory, loop) = try Self.runningCard()
        var old = try VirtioDeviceState(transport: transport, mmioBase: 0xD000_1000, gsi: 6)
        // As version 1 wrote it: two queues, no control-queue features, no `net`.
        old.transport.queues.removeLast()
        old.transport.driverFeatures &= ~(VirtioNet.Feature.controlQueue | VirtioNet.Feature.guestAnnounce)
        old.net = nil
        Self.release(transport)
        let fresh = try VirtioMMIOTransport(device: card, memory: memory, interrupt: Line(), eventLoop: loop)
        try old.restore(into: fresh)
        #expect(fresh.withDevice { _ in !card.offersControlQueue })
        #expect(fresh.offeredFeatures & (VirtioNet.Feature.controlQueue | VirtioNet.Feature.guestAnnounce) == 0)
        #expect(fresh.deviceStatus & VirtioStatus.driverOK != 0 && fresh.deviceStatus & VirtioStatus.deviceNeedsReset == 0)
        #expect(fresh.withDevice { _ in card.requestAnnounce() } == .notNegotiated)
        // Saved again, it says so, and a later restore keeps the old set.
        let again = try VirtioDeviceState(transport: fresh, mmioBase: 0xD000_1000, gsi: 6)
        #expect(again.net == .init(announcePending: false, offersControlQueue: false) && again.transport.queues.count == 3)

        // Two queues but a control queue negotiated: not something any build wrote.
        var bad = old
        bad.transport.driverFeatures |= VirtioNet.Feature.controlQueue
        let e = try #require(throws: DeviceStateError.self) {
            try bad.restore(into: VirtioMMIOTransport(device: card, memory: memory, interrupt: Line(), eventLoop: loop))
        }
        #expect(e.message.contains("no control queue"))
    }

    @Test func serialStateRoundTrips() throws {
        let uart = Serial8250(interrupt: nil) { _ in }  // transmits nothing here: only registers are written
        withUnsafeBytes(of: UInt8(0x83)) { uart.write(offset: 3, data: $0) }  // DLAB on
        withUnsafeBytes(of: UInt8(0x01)) { uart.write(offset: 0, data: $0) }  // 115200 baud
        withUnsafeBytes(of: UInt8(0x03)) { uart.write(offset: 3, data: $0) }  // 8N1
        uart.enqueueInput(Array("ls\n".utf8))
        let states = DeviceStates(serial: uart.snapshot(), virtio: [])
        try states.validate()
        let decoded = try JSONDecoder().decode(DeviceStates.self, from: JSONEncoder().encode(states))
        let copy = Serial8250(interrupt: nil) { _ in }
        copy.restore(try #require(decoded.serial))
        #expect(copy.snapshot() == uart.snapshot())
        #expect(copy.snapshot().divisorLow == 1 && copy.snapshot().receiveBuffer == Array("ls\n".utf8))
    }
}
