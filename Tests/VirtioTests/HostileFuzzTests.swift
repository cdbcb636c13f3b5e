import Foundation
import GuestMemory
import Storage
import Testing
@testable import Virtio

/// Deterministic pseudo-random numbers (SplitMix64), so a failure replays.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// Random garbage where the guest controls memory and registers: the device side
/// must never trap, and whatever it accepts must lie inside guest RAM.
@Suite struct HostileFuzzTests {
    /// A guest address that is often valid, sometimes near an edge, sometimes wild.
    private func address(_ rng: inout SplitMix64, ram: UInt64) -> UInt64 {
        switch rng.next() % 6 {
        case 0: return rng.next()
        case 1: return ram - UInt64.random(in: 0...64, using: &rng)
        case 2: return UInt64.max - UInt64.random(in: 0...64, using: &rng)
        default: return UInt64.random(in: 0..<ram, using: &rng)
        }
    }

    @Test func randomDescriptorTablesNeverEscapeGuestRAM() throws {
        let ram: UInt64 = 1 << 20
        let memory = try GuestMemory(ranges: [(GuestAddress(0), ram)])
        var rng = SplitMix64(state: 0x5eed)
        var accepted = 0, faulted = 0, refused = 0
        for round in 0..<300 {
            let guest = try FakeGuestQueue(memory: memory, size: 16, base: 0x1000)
            let queue = SplitQueue(maxSize: 16, memory: memory)
            try guest.configure(queue, features: round % 2 == 0 ? VirtioFeature.ringIndirectDesc : 0)
            // Random descriptors in the table and in a possible indirect table.
            for table: UInt64 in [guest.descriptorTable, 0x40000] {
                for i: UInt16 in 0..<16 {
                    let length = rng.next() % 4 == 0 ? UInt32(truncatingIfNeeded: rng.next()) : UInt32(rng.next() % 8192)
                    try guest.writeDescriptor(i, address: address(&rng, ram: ram), length: length,
                                              flags: UInt16(rng.next() % 8), next: UInt16(rng.next() % 20), table: table)
                }
            }
            // Point some indirect descriptors at the second table.
            if round % 2 == 0 { try guest.writeDescriptor(UInt16(rng.next() % 16), address: 0x40000, length: UInt32(16 * (rng.next() % 18)), flags: DescriptorChain.flagIndirect) }
            for _ in 0..<Int(rng.next() % 20) { try guest.publish(UInt16(rng.next() % 18)) }
            do {
                while let chain = try queue.popAvailable() {
                    if chain.fault == nil {
                        accepted += 1
                        for b in chain.buffers { #expect(memory.containsRange(b.address, length: UInt64(b.length))) }
                        #expect(chain.buffers.count <= 16)
                    } else {
                        faulted += 1
                    }
                    try queue.addUsed(head: chain.head, length: 0)
                }
            } catch is VirtqueueError {
                refused += 1
            }
        }
        #expect(accepted > 0 && faulted > 0 && refused > 0)
    }

    /// Random chains of overlapping buffers that add up past 4 GiB (lengths, counts,
    /// direction, sector, direct or indirect all random) on a disk large enough for
    /// the range check to pass: each must be answered IOERR, none may trap (issue #7).
    @Test func randomOverlappingChainsPast4GiBAreRefused() throws {
        let h = try BlockHarness(sparseSize: 5 << 30, features: VirtioFeature.version1 | VirtioFeature.ringIndirectDesc,
                                 memorySize: 64 << 20, queueSize: 256)
        var rng = SplitMix64(state: 0x4_0000_0000)
        let header: UInt64 = 0x90000, status: UInt64 = 0x90010, window: UInt64 = 0x100_0000
        for round in 0..<40 {
            let write = rng.next() % 2 == 0
            try h.memory.store(write ? T.out : T.in, to: GuestAddress(header))
            try h.memory.store(rng.next() % 4 == 0 ? rng.next() % (1 << 20) : 0, to: GuestAddress(header + 8))
            try h.memory.store(UInt8(0xee), to: GuestAddress(status))
            // 17 MiB to 48 MiB less a sector each, all inside the same 48 MiB window of RAM.
            var data: [(address: UInt64, length: UInt32, writable: Bool)] = []
            var total: UInt64 = 0
            while total <= 1 << 32 {
                let length = UInt64((17 << 11) + rng.next() % (31 << 11)) * 512
                let offset = min((rng.next() % 64) * 512, (48 << 20) - length)
                data.append((window + offset, UInt32(length), !write))
                total += length
            }
            #expect(data.count <= 254)
            let buffers = [(header, UInt32(16), false)] + data + [(status, UInt32(1), true)]
            let head = rng.next() % 3 == 0
                ? try h.guest.makeIndirectChain(buffers, table: 0x200000)
                : try h.guest.makeChain(buffers)
            try h.guest.publish(head)
            #expect(h.kickAndWait(), "round \(round): \(h.transport.lastError ?? "")")
            #expect(try h.memory.load(UInt8.self, from: GuestAddress(status)) == S.ioerr, "round \(round), \(total) bytes")
            #expect(try h.guest.usedElement(h.guest.usedIdx &- 1).length == 1)
        }
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
        #expect((h.device.image as? RawImage)?.allocatedBytes ?? .max < 1 << 20) // no write went through
        #expect(try h.run(type: T.in, sector: 0, inLength: 512).status == S.ok)
    }

    @Test func randomRegisterWritesNeverTrap() throws {
        let memory = try makeGuestMemory(1 << 20)
        let loop = try RunningLoop()
        let device = try VirtioBlock(image: BlockImageFixture.make(), synchronousIO: true)
        let transport = try VirtioMMIOTransport(device: device, memory: memory, interrupt: FakeInterruptLine(), eventLoop: loop.loop)
        let driver = FakeDriver(transport: transport)
        var rng = SplitMix64(state: 42)
        let interesting: [UInt32] = [0, 1, 2, 3, 7, 8, 11, 15, 16, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0xffff_ffff]
        for _ in 0..<5000 {
            let offset = rng.next() % 3 == 0 ? UInt64(rng.next() % 0x1000) : UInt64(rng.next() % 0x30) * 4
            let value = rng.next() % 2 == 0 ? interesting[Int(rng.next() % UInt64(interesting.count))] : UInt32(truncatingIfNeeded: rng.next())
            switch rng.next() % 4 {
            case 0: _ = driver.read32(offset)
            case 1:
                var bytes = [UInt8](repeating: 0, count: Int(rng.next() % 9))
                bytes.withUnsafeMutableBytes { transport.read(offset: offset, into: $0) }
            case 2 where rng.next() % 4 == 0:
                // Sometimes walk the status machine properly so queues get configured and activated.
                driver.negotiate(VirtioFeature.version1 | VirtioFeature.ringIndirectDesc | (rng.next() % 2 == 0 ? VirtioFeature.ringEventIdx : 0))
            default: driver.write32(offset, value)
            }
        }
        usleep(50_000) // let queued notifications run
        driver.write32(0x70, 0)
        #expect(driver.status == 0)
    }
}

/// A small raw image in a temp file, deleted when the process exits.
enum BlockImageFixture {
    static func make(size: Int = 64 * 1024) throws -> DiskImage {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-fuzz-\(UUID().uuidString).raw").path
        try Data(count: size).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) } // the open descriptor keeps the file
        return try DiskImageOpener.open(path: path, format: .raw)
    }
}
