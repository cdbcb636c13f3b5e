import Foundation
import GuestMemory
import Testing
@testable import Virtio

/// 1 MiB of guest RAM at 0; rings at 0x1000, data from 0x20000.
private func makeQueue(size: UInt16 = 8, maxSize: UInt16 = 16, features: UInt64 = 0) throws -> (GuestMemory, FakeGuestQueue, SplitQueue) {
    let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
    let guest = try FakeGuestQueue(memory: memory, size: size, base: 0x1000)
    let queue = SplitQueue(maxSize: maxSize, memory: memory)
    try guest.configure(queue, features: features)
    return (memory, guest, queue)
}

private func expectQueueError(_ expected: VirtqueueError, _ body: () throws -> Void) {
    #expect(throws: expected) { try body() }
}

@Suite struct SplitQueueTests {
    @Test func popsAChainAndReturnsIt() throws {
        let (_, guest, queue) = try makeQueue()
        let head = try guest.post([(0x20000, 16, false), (0x21000, 512, true), (0x22000, 1, true)])
        let chain = try #require(try queue.popAvailable())
        #expect(chain.head == head)
        #expect(chain.fault == nil)
        #expect(chain.readable == [GuestBuffer(address: GuestAddress(0x20000), length: 16, isWritable: false)])
        #expect(chain.writable.map(\.length) == [512, 1])
        #expect(try queue.popAvailable() == nil)

        try queue.addUsed(head: chain.head, length: 513)
        #expect(guest.usedIdx == 1)
        #expect(try guest.usedElement(0) == (UInt32(head), 513))
    }

    @Test func usedRingWritesAreMarkedForMigrationAndReadsAreNot() throws {
        let (memory, guest, queue) = try makeQueue()
        let head = try guest.post([(0x20000, 16, false)])
        memory.writtenPages.clear()
        memory.handedOutPages.clear()
        let chain = try #require(try queue.popAvailable())
        // Reading the avail ring and the descriptor table leaves the bitmaps alone.
        #expect(memory.writtenPages.peek().allSatisfy { $0 == 0 })
        #expect(memory.handedOutPages.peek().allSatisfy { $0 == 0 })
        try queue.addUsed(head: chain.head, length: 0)
        #expect(try guest.usedElement(0) == (UInt32(head), 0))
        // The used ring's page (the VMM wrote it; KVM's dirty log cannot see that).
        let usedPage = Int(queue.usedRing / 4096)
        #expect(memory.writtenPages.isSet(usedPage))
        #expect(memory.handedOutPages.peek().allSatisfy { $0 == 0 })
    }

    @Test func indicesWrapAround() throws {
        let (memory, guest, fresh) = try makeQueue(size: 4)
        var state = fresh.state
        state.nextAvail = 65_533; state.nextUsed = 65_533
        let queue = try SplitQueue(state: state, memory: memory)
        try guest.setAvailIdx(65_533)
        for _ in 0..<5 {
            for _ in 0..<3 { try guest.post([(0x20000, 8, false)]) }
            for _ in 0..<3 { try queue.addUsed(head: try #require(try queue.popAvailable()).head, length: 0) }
        }
        #expect(guest.availIdx == 65_533 &+ 15)
        #expect(guest.usedIdx == guest.availIdx)
        #expect(queue.state.nextAvail == guest.availIdx)
    }

    @Test(arguments: [UInt16(0), 3, 12, 32])
    func rejectsBadSizes(size: UInt16) throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        let queue = SplitQueue(maxSize: 16, memory: memory)
        queue.size = size
        queue.descriptorTable = 0x1000; queue.availRing = 0x2000; queue.usedRing = 0x3000
        expectQueueError(.invalidSize(size, max: 16)) { try queue.validate() }
    }

    @Test func rejectsMisalignedAndOutOfMemoryRings() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        let queue = SplitQueue(maxSize: 16, memory: memory)
        queue.size = 16
        queue.descriptorTable = 0x1008; queue.availRing = 0x2000; queue.usedRing = 0x3000
        expectQueueError(.misalignedRing("descriptor table", address: 0x1008)) { try queue.validate() }
        queue.descriptorTable = 0x1000; queue.availRing = 0x2001
        expectQueueError(.misalignedRing("avail ring", address: 0x2001)) { try queue.validate() }
        queue.availRing = 0x2000; queue.usedRing = 0x3002
        expectQueueError(.misalignedRing("used ring", address: 0x3002)) { try queue.validate() }
        queue.usedRing = (1 << 20) - 8 // ring runs past the end of RAM
        expectQueueError(.ringOutsideMemory("used ring", address: (1 << 20) - 8, length: 6 + 8 * 16)) { try queue.validate() }
        queue.usedRing = 0x3000; queue.descriptorTable = UInt64.max - 15 // wraps
        expectQueueError(.ringOutsideMemory("descriptor table", address: UInt64.max - 15, length: 256)) { try queue.validate() }
    }

    @Test func unconfiguredQueueFailsInsteadOfTrapping() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        let queue = SplitQueue(maxSize: 16, memory: memory)
        #expect(throws: VirtqueueError.notReady) { try queue.popAvailable() }
        #expect(throws: VirtqueueError.notReady) { try queue.addUsed(head: 0, length: 0) }
    }

    @Test func loopIsRefused() throws {
        let (_, guest, queue) = try makeQueue()
        try guest.writeDescriptor(0, address: 0x20000, length: 8, flags: DescriptorChain.flagNext, next: 1)
        try guest.writeDescriptor(1, address: 0x20000, length: 8, flags: DescriptorChain.flagNext, next: 0)
        try guest.publish(0)
        expectQueueError(.chainTooLong(limit: 8)) { _ = try queue.popAvailable() }
    }

    @Test func selfLoopIsRefused() throws {
        let (_, guest, queue) = try makeQueue()
        try guest.writeDescriptor(5, address: 0x20000, length: 8, flags: DescriptorChain.flagNext, next: 5)
        try guest.publish(5)
        expectQueueError(.chainTooLong(limit: 8)) { _ = try queue.popAvailable() }
    }

    @Test func descriptorIndicesOutOfRangeAreRefused() throws {
        let (_, guest, queue) = try makeQueue()
        try guest.publish(8) // head past the table
        expectQueueError(.descriptorIndexOutOfRange(8, tableSize: 8)) { _ = try queue.popAvailable() }

        let (_, guest2, queue2) = try makeQueue()
        try guest2.writeDescriptor(0, address: 0x20000, length: 8, flags: DescriptorChain.flagNext, next: 0xffff)
        try guest2.publish(0)
        expectQueueError(.descriptorIndexOutOfRange(0xffff, tableSize: 8)) { _ = try queue2.popAvailable() }
    }

    @Test func buffersOutsideRAMAreFaults() throws {
        let (_, guest, queue) = try makeQueue()
        try guest.post([(0x20000, 16, false), ((1 << 20) - 4, 8, true)])      // runs past the end
        try guest.post([(0x20000, 16, false), (UInt64.max - 3, 8, true)])     // wraps
        try guest.post([(0x4000_0000, 1, false)])                             // nowhere
        let a = try #require(try queue.popAvailable())
        #expect(a.fault == .bufferOutsideMemory(address: (1 << 20) - 4, length: 8))
        let b = try #require(try queue.popAvailable())
        #expect(b.fault == .bufferOutsideMemory(address: UInt64.max - 3, length: 8))
        let c = try #require(try queue.popAvailable())
        #expect(c.fault == .bufferOutsideMemory(address: 0x4000_0000, length: 1))
    }

    @Test func zeroLengthAndWrongDirectionAreFaults() throws {
        let (_, guest, queue) = try makeQueue()
        try guest.post([(0x20000, 0, false)])
        try guest.post([(0x20000, 16, true), (0x21000, 16, false)])
        #expect(try queue.popAvailable()?.fault == .zeroLengthBuffer(address: 0x20000))
        #expect(try queue.popAvailable()?.fault == .readableAfterWritable)
    }

    @Test func availIndexJumpIsRefused() throws {
        let (_, guest, queue) = try makeQueue()
        try guest.setAvailIdx(9)
        expectQueueError(.availIndexJump(availIndex: 9, nextAvail: 0, size: 8)) { _ = try queue.popAvailable() }
        try guest.setAvailIdx(0xffff) // "backwards" is a jump too
        expectQueueError(.availIndexJump(availIndex: 0xffff, nextAvail: 0, size: 8)) { _ = try queue.popAvailable() }
    }

    @Test func indirectTableIsFollowed() throws {
        let (_, guest, queue) = try makeQueue(features: VirtioFeature.ringIndirectDesc)
        let head = try guest.makeIndirectChain([(0x20000, 16, false), (0x21000, 4096, true), (0x22000, 1, true)], table: 0x30000)
        try guest.publish(head)
        let chain = try #require(try queue.popAvailable())
        #expect(chain.head == head)
        #expect(chain.fault == nil)
        #expect(chain.buffers.map(\.length) == [16, 4096, 1])
    }

    @Test func indirectNeedsTheFeature() throws {
        let (_, guest, queue) = try makeQueue()
        try guest.publish(try guest.makeIndirectChain([(0x20000, 16, false)], table: 0x30000))
        expectQueueError(.indirectNotNegotiated) { _ = try queue.popAvailable() }
    }

    @Test func hostileIndirectTablesAreRefused() throws {
        let f = VirtioFeature.ringIndirectDesc
        // Nested: an indirect table entry that is itself INDIRECT.
        var (_, guest, queue) = try makeQueue(features: f)
        try guest.writeDescriptor(0, address: 0x30000, length: 16, flags: DescriptorChain.flagIndirect, table: 0x31000)
        try guest.writeDescriptor(0, address: 0x31000, length: 16, flags: DescriptorChain.flagIndirect)
        try guest.publish(0)
        expectQueueError(.nestedIndirect) { _ = try queue.popAvailable() }

        // Length not a multiple of 16, zero, or more entries than the queue size.
        for length: UInt32 in [24, 0, 16 * 9] {
            (_, guest, queue) = try makeQueue(features: f)
            try guest.writeDescriptor(0, address: 0x30000, length: length, flags: DescriptorChain.flagIndirect)
            try guest.publish(0)
            expectQueueError(.invalidIndirectLength(length)) { _ = try queue.popAvailable() }
        }

        // INDIRECT together with NEXT.
        (_, guest, queue) = try makeQueue(features: f)
        try guest.writeDescriptor(0, address: 0x30000, length: 16, flags: DescriptorChain.flagIndirect | DescriptorChain.flagNext, next: 1)
        try guest.publish(0)
        expectQueueError(.indirectWithNext) { _ = try queue.popAvailable() }

        // Table outside RAM.
        (_, guest, queue) = try makeQueue(features: f)
        try guest.writeDescriptor(0, address: (1 << 20) - 16, length: 32, flags: DescriptorChain.flagIndirect)
        try guest.publish(0)
        expectQueueError(.indirectTableOutsideMemory(address: (1 << 20) - 16, length: 32)) { _ = try queue.popAvailable() }

        // A next index past the end of the indirect table; a loop inside it.
        (_, guest, queue) = try makeQueue(features: f)
        try guest.writeDescriptor(0, address: 0x20000, length: 8, flags: DescriptorChain.flagNext, next: 2, table: 0x30000)
        try guest.writeDescriptor(0, address: 0x30000, length: 32, flags: DescriptorChain.flagIndirect)
        try guest.publish(0)
        expectQueueError(.descriptorIndexOutOfRange(2, tableSize: 2)) { _ = try queue.popAvailable() }
        (_, guest, queue) = try makeQueue(features: f)
        try guest.writeDescriptor(0, address: 0x20000, length: 8, flags: DescriptorChain.flagNext, next: 1, table: 0x30000)
        try guest.writeDescriptor(1, address: 0x20000, length: 8, flags: DescriptorChain.flagNext, next: 0, table: 0x30000)
        try guest.writeDescriptor(0, address: 0x30000, length: 32, flags: DescriptorChain.flagIndirect)
        try guest.publish(0)
        expectQueueError(.chainTooLong(limit: 8)) { _ = try queue.popAvailable() }
    }

    @Test func chainsCountDirectPlusIndirectDescriptors() throws {
        let (_, guest, queue) = try makeQueue(features: VirtioFeature.ringIndirectDesc)
        // 2 direct descriptors then an 7-entry indirect table: 9 > queue size 8.
        for i: UInt16 in 0..<7 {
            try guest.writeDescriptor(i, address: 0x20000, length: 8, flags: i < 6 ? DescriptorChain.flagNext : 0, next: i + 1, table: 0x30000)
        }
        try guest.writeDescriptor(0, address: 0x20000, length: 8, flags: DescriptorChain.flagNext, next: 1)
        try guest.writeDescriptor(1, address: 0x20000, length: 8, flags: DescriptorChain.flagNext, next: 2)
        try guest.writeDescriptor(2, address: 0x30000, length: 16 * 7, flags: DescriptorChain.flagIndirect)
        try guest.publish(0)
        expectQueueError(.chainTooLong(limit: 8)) { _ = try queue.popAvailable() }
    }

    @Test func flagsSuppressNotificationsWithoutEventIdx() throws {
        let (_, guest, queue) = try makeQueue()
        try guest.post([(0x20000, 8, false)])
        let chain = try #require(try queue.popAvailable())
        try queue.addUsed(head: chain.head, length: 0)
        #expect(try queue.needsNotification())
        try guest.setAvailFlags(1) // VRING_AVAIL_F_NO_INTERRUPT
        #expect(try !queue.needsNotification())

        try queue.disableNotification()
        #expect(guest.usedFlags == 1)
        #expect(try !queue.enableNotification())
        #expect(guest.usedFlags == 0)
        try guest.post([(0x20000, 8, false)])
        #expect(try queue.enableNotification()) // buffers arrived: caller must look again
    }

    @Test func eventIdxSuppressesNotifications() throws {
        let (_, guest, queue) = try makeQueue(features: VirtioFeature.ringEventIdx)
        func complete(_ n: Int) throws {
            for _ in 0..<n { try guest.post([(0x20000, 8, false)]) }
            for _ in 0..<n { try queue.addUsed(head: try #require(try queue.popAvailable()).head, length: 0) }
        }
        try complete(1)
        #expect(try queue.needsNotification()) // first time: always
        // Driver asks to be interrupted only when used.idx passes 4 (used_event = 3).
        try guest.setUsedEvent(3)
        try complete(1)                        // used.idx 2
        #expect(try !queue.needsNotification())
        try complete(2)                        // used.idx 4: stepped over used_event 3
        #expect(try queue.needsNotification())
        try complete(1)                        // used.idx 5: 3 already passed
        #expect(try !queue.needsNotification())
        #expect(try !queue.needsNotification()) // nothing new: never

        // avail_event tells the driver which avail index to notify us at.
        #expect(try !queue.enableNotification())
        #expect(guest.availEvent == queue.state.nextAvail)
        try queue.disableNotification()
        #expect(guest.usedFlags == 0) // EVENT_IDX does not use the flag

        // Buffers left in the ring (too few for the device): avail_event follows the
        // driver's avail.idx, so the next buffer it adds is notified.
        try guest.post([(0x20000, 8, true)])
        try guest.post([(0x20000, 8, true)])
        #expect(try queue.enableNotification())
        #expect(guest.availEvent == guest.availIdx)
    }

    /// Both EVENT_IDX rules compare free-running 16-bit indices: used_event and
    /// avail_event must work when used.idx / avail.idx wrap from 65535 to 0.
    @Test func eventIdxDecisionsAcrossIndexWrap() throws {
        let (_, guest, queue) = try makeQueue(features: VirtioFeature.ringEventIdx)
        // Start both rings 3 short of the wrap, as after 65533 requests.
        var state = queue.state
        state.nextAvail = 65533
        state.nextUsed = 65533
        state.signalledUsed = 65533
        try queue.restore(state)
        try guest.setAvailIdx(65533)
        func complete(_ n: Int) throws {
            for _ in 0..<n { try guest.post([(0x20000, 8, false)]) }
            for _ in 0..<n { try queue.addUsed(head: try #require(try queue.popAvailable()).head, length: 0) }
        }
        try guest.setUsedEvent(0)              // interrupt once used.idx passes 0, i.e. reaches 1
        try complete(2)                        // 65535: not there yet
        #expect(try !queue.needsNotification())
        try complete(2)                        // 65535 -> 1 across the wrap: steps over 0
        #expect(guest.usedIdx == 1)
        #expect(try queue.needsNotification())
        try guest.setUsedEvent(65534)          // an event already behind us (1 - 65534 wraps)
        try complete(1)
        #expect(try !queue.needsNotification())
        try guest.setUsedEvent(2)              // exactly the entry just added
        try complete(1)                        // used.idx 3 steps over 2
        #expect(try queue.needsNotification())

        // avail_event across the wrap: the device asks at the driver's index; a driver
        // kick decision (vring_need_event on the avail side) must then say "notify".
        try guest.setAvailIdx(65535)
        var restored = queue.state
        restored.nextAvail = 65535
        try queue.restore(restored)
        #expect(try !queue.enableNotification())
        #expect(guest.availEvent == 65535)
        let old = guest.availIdx
        try guest.post([(0x20000, 8, false)])  // avail.idx 0
        let new = guest.availIdx
        #expect(new == 0)
        #expect(new &- guest.availEvent &- 1 < new &- old) // the driver notifies
        // Draining leaves avail_event where it was: further buffers are not notified.
        _ = try queue.popAvailable()
        try queue.disableNotification()
        try guest.post([(0x20000, 8, false)])
        #expect(!(guest.availIdx &- guest.availEvent &- 1 < guest.availIdx &- new))
    }

    /// A batch adds many used elements and publishes used.idx once.
    @Test func batchedUsedElementsArePublishedOnce() throws {
        let (_, guest, queue) = try makeQueue()
        for _ in 0..<3 { try guest.post([(0x20000, 8, true)]) }
        for length: UInt32 in 1...3 {
            try queue.addUsed(head: try #require(try queue.popAvailable()).head, length: length, publish: false)
        }
        #expect(guest.usedIdx == 0)            // written, not yet visible
        #expect(try guest.usedElement(2).length == 3)
        try queue.publishUsed()
        #expect(guest.usedIdx == 3)
        try guest.post([(0x20000, 8, true)])
        try queue.addUsed(head: try #require(try queue.popAvailable()).head, length: 4, publish: false)
        #expect(try queue.needsNotification()) // publishes before deciding
        #expect(guest.usedIdx == 4)
    }

    @Test func stateRoundTripsAndIsRevalidated() throws {
        let (memory, guest, queue) = try makeQueue(features: VirtioFeature.ringEventIdx)
        try guest.post([(0x20000, 8, false)])
        try queue.addUsed(head: try #require(try queue.popAvailable()).head, length: 3)
        let data = try JSONEncoder().encode(queue.state)
        let decoded = try JSONDecoder().decode(QueueState.self, from: data)
        #expect(decoded == queue.state)
        let restored = try SplitQueue(state: decoded, memory: memory)
        #expect(restored.state.nextAvail == 1 && restored.state.nextUsed == 1)

        var bad = decoded
        bad.usedRing = 1 << 20
        #expect(throws: VirtqueueError.self) { try SplitQueue(state: bad, memory: memory) }
        bad = decoded
        bad.size = 32 // above maxSize
        #expect(throws: VirtqueueError.invalidSize(32, max: 16)) { try SplitQueue(state: bad, memory: memory) }
    }

    @Test func undoPopGivesChainsBack() throws {
        let (_, guest, queue) = try makeQueue()
        let a = try guest.post([(0x20000, 8, true)])
        _ = try queue.popAvailable()
        queue.undoPop(1)
        #expect(try queue.popAvailable()?.head == a)
    }

    @Test func bufferListStreamsBytesAcrossDescriptors() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        let list = [GuestBuffer(address: GuestAddress(0x100), length: 3, isWritable: true),
                    GuestBuffer(address: GuestAddress(0x200), length: 5, isWritable: true)]
        let bytes: [UInt8] = [1, 2, 3, 4, 5, 6, 7]
        #expect(try bytes.withUnsafeBytes { try list.write(to: memory, from: $0) } == 7)
        #expect(try list.read(from: memory, count: 8) == bytes + [0])
        #expect(list.slice(from: 2, length: 3) == [GuestBuffer(address: GuestAddress(0x102), length: 1, isWritable: true),
                                                   GuestBuffer(address: GuestAddress(0x200), length: 2, isWritable: true)])
        #expect(throws: (any Error).self) { _ = try list.read(from: memory, count: 9) }
    }

    /// Slicing an unchecked buffer at the top of the address space used to trap
    /// adding the offset; the wrapped result is then refused by the RAM check.
    @Test func slicingABufferThatWrapsDoesNotTrap() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        let list = [GuestBuffer(address: GuestAddress(UInt64.max - 1), length: 16, isWritable: true)]
        let tail = list.slice(from: 8, length: 8)
        #expect(tail == [GuestBuffer(address: GuestAddress(6), length: 8, isWritable: true)])
        #expect(throws: (any Error).self) { _ = try list.hostBuffers(in: memory) }
    }
}
