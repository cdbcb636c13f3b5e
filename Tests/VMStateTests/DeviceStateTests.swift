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
