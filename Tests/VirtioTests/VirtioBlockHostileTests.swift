import Foundation
import GuestMemory
import Storage
import Testing
@testable import Virtio

/// Requests a hostile driver can build that a well-behaved one never does: data
/// descriptors that overlap (each is only checked to lie in RAM, so their sum is
/// unbounded by RAM), chains as long as the queue allows, configuration values
/// past what the device can answer. The VMM must answer or refuse, never trap.
@Suite(.serialized) struct VirtioBlockHostileTests {
    /// 17 MiB: 242 of them (a chain within the 256-entry queue) pass 4 GiB.
    static let big: UInt32 = 17 << 20
    static let bufferAt: UInt64 = 0x0100_0000
    static let headerAt: UInt64 = 0x90000
    static let statusAt: UInt64 = 0x90010

    /// A harness with a 5 GiB sparse disk, a 256-entry queue and 64 MiB of guest RAM.
    private func largeDisk() throws -> BlockHarness {
        try BlockHarness(sparseSize: 5 << 30, memorySize: 64 << 20, queueSize: 256)
    }

    /// Posts `type` at `sector` with the given data descriptors, waits, returns (status, used length).
    private func request(_ h: BlockHarness, _ type: UInt32, sector: UInt64 = 0,
                         _ data: [(address: UInt64, length: UInt32, writable: Bool)]) throws -> (status: UInt8, used: UInt32) {
        try h.memory.store(type, to: GuestAddress(Self.headerAt))
        try h.memory.store(sector, to: GuestAddress(Self.headerAt + 8))
        try h.memory.store(UInt8(0xee), to: GuestAddress(Self.statusAt))
        let head = try h.guest.post([(Self.headerAt, 16, false)] + data + [(Self.statusAt, 1, true)])
        guard h.kickAndWait() else { throw OptionError("not completed: \(h.transport.lastError ?? "")") }
        let used = try h.guest.usedElement(h.guest.usedIdx &- 1)
        #expect(used.id == UInt32(head))
        return (try h.memory.load(UInt8.self, from: GuestAddress(Self.statusAt)), used.length)
    }

    /// 242 overlapping 17 MiB buffers ask for a 4.02 GiB read into 17 MiB of RAM;
    /// the used length cannot say that (it trapped converting to UInt32: issue #7).
    @Test func overlappingBuffersSummingPast4GiBAreIOErrors() throws {
        let h = try largeDisk()
        let over = [(address: UInt64, length: UInt32, writable: Bool)](repeating: (Self.bufferAt, Self.big, true), count: 242)
        let r = try request(h, T.in, over)
        #expect(r.status == S.ioerr)
        #expect(r.used == 1)
        // The same as a write: refused before anything reaches the file.
        let w = try request(h, T.out, over.map { ($0.address, $0.length, false) })
        #expect(w.status == S.ioerr)
        #expect((h.device.image as? RawImage)?.allocatedBytes ?? .max < 1 << 20)
        // Exactly 4 GiB is one sector too many as well. (4 GiB less a sector is the
        // largest request served; reading that much takes seconds, so it is not run here.)
        let exact = over.prefix(240) + [(Self.bufferAt, UInt32((4 << 30) - 240 * UInt64(Self.big)), true)]
        #expect(try request(h, T.in, Array(exact)).status == S.ioerr)
        // The device is still fine.
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
        #expect(try request(h, T.in, sector: 9 << 20, [(Self.bufferAt, 4096, true)]) == (S.ok, 4097))
    }

    /// A chain as long as the queue (256: header, 254 = seg_max data segments,
    /// status), all data segments on the same page, direct and indirect.
    @Test func maximumLengthChainsAreServed() throws {
        let h = try BlockHarness(features: VirtioFeature.version1 | VirtioFeature.ringIndirectDesc, queueSize: 256)
        let data = [(address: UInt64, length: UInt32, writable: Bool)](repeating: (0x300000, 512, true), count: 254)
        #expect(try request(h, T.in, sector: 3, data) == (S.ok, 254 * 512 + 1))
        #expect(try h.memory.read(from: GuestAddress(0x300000), count: 2) == [UInt8(truncatingIfNeeded: 3 + 253 + 1), UInt8(truncatingIfNeeded: 3 + 253 + 1)]) // the last sector read wins
        // The same as one indirect table of 256 entries.
        try h.memory.store(T.in, to: GuestAddress(Self.headerAt)); try h.memory.store(UInt64(5), to: GuestAddress(Self.headerAt + 8))
        let head = try h.guest.makeIndirectChain([(Self.headerAt, 16, false)] + data + [(Self.statusAt, 1, true)], table: 0x200000)
        try h.guest.publish(head)
        #expect(h.kickAndWait())
        #expect(try h.guest.usedElement(h.guest.usedIdx &- 1).length == 254 * 512 + 1)
        #expect(try h.memory.load(UInt8.self, from: GuestAddress(Self.statusAt)) == S.ok)
        // One data segment more than seg_max (in a longer indirect table) is refused.
        let tooLong = try h.guest.makeIndirectChain([(Self.headerAt, 16, false)] + data + [(0x300000, 512, true), (Self.statusAt, 1, true)],
                                                    table: 0x200000)
        try h.guest.publish(tooLong)
        h.driver.write32(0x50, 0)
        #expect(waitUntil { h.driver.status & VirtioStatus.deviceNeedsReset != 0 })
        #expect(h.transport.lastError?.contains("indirect table length") == true)
    }

    /// A serial longer than GET_ID can return trapped when the guest asked for it.
    @Test func overlongSerialIsRefusedWhenTheDeviceIsMade() throws {
        let image = try BlockImageFixture.make()
        #expect(throws: OptionError("serial '123456789012345678901' is longer than 20 bytes")) {
            try VirtioBlock(image: image, serial: "123456789012345678901", synchronousIO: true)
        }
        let h = try BlockHarness(serial: "12345678901234567890")
        #expect(try h.run(type: T.getID, sector: 0, inLength: 20).data == Array("12345678901234567890".utf8))
    }

    /// seg_max is the queue size less two: smaller queues would underflow it.
    @Test(arguments: [UInt16(0), 1, 2, 3, 6])
    func unusableQueueSizesAreRefused(size: UInt16) throws {
        let image = try BlockImageFixture.make()
        #expect(throws: OptionError.self) { try VirtioBlock(image: image, queueSize: size, synchronousIO: true) }
    }
}
