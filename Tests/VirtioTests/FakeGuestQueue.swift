import GuestMemory
@testable import Virtio

/// The driver's side of a split virtqueue, laid out in real guest memory, in the
/// spirit of rust-vmm's MockSplitQueue: tests post chains exactly as a guest would
/// (including hostile ones) and read back what the device put in the used ring.
final class FakeGuestQueue {
    let memory: GuestMemory
    let size: UInt16
    let descriptorTable: UInt64
    let availRing: UInt64
    let usedRing: UInt64
    private(set) var availIdx: UInt16 = 0
    private var nextFree: UInt16 = 0
    private var usedSeen: UInt16 = 0

    /// Lays the rings out from `base` (page-aligned pieces, zeroed).
    init(memory: GuestMemory, size: UInt16, base: UInt64) throws {
        self.memory = memory
        self.size = size
        descriptorTable = base
        availRing = base + 0x1000 * ((16 * UInt64(size) + 0xfff) / 0x1000)
        usedRing = availRing + 0x1000
        try memory.zero(GuestAddress(base), length: usedRing + 0x1000 * ((8 * UInt64(size) + 6 + 0xfff) / 0x1000) - base)
    }

    /// Programs a device-side queue the way the transport would.
    func configure(_ queue: SplitQueue, features: UInt64 = 0) throws {
        queue.size = size
        queue.descriptorTable = descriptorTable
        queue.availRing = availRing
        queue.usedRing = usedRing
        queue.setFeatures(features)
        try queue.validate()
        queue.isReady = true
    }

    func writeDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0, table: UInt64? = nil) throws {
        let at = (table ?? descriptorTable) + 16 * UInt64(index)
        try memory.store(address, to: GuestAddress(at))
        try memory.store(length, to: GuestAddress(at + 8))
        try memory.store(flags, to: GuestAddress(at + 12))
        try memory.store(next, to: GuestAddress(at + 14))
    }

    /// Writes a chain into free descriptors, linked with NEXT; returns its head.
    func makeChain(_ buffers: [(address: UInt64, length: UInt32, writable: Bool)]) throws -> UInt16 {
        let head = nextFree
        for (i, b) in buffers.enumerated() {
            let index = nextFree
            nextFree = (nextFree + 1) % size
            let last = i == buffers.count - 1
            try writeDescriptor(index, address: b.address, length: b.length,
                                flags: (b.writable ? DescriptorChain.flagWrite : 0) | (last ? 0 : DescriptorChain.flagNext),
                                next: last ? 0 : nextFree)
        }
        return head
    }

    /// Writes `buffers` as an indirect table at `table` and one INDIRECT descriptor pointing at it.
    func makeIndirectChain(_ buffers: [(address: UInt64, length: UInt32, writable: Bool)], table: UInt64) throws -> UInt16 {
        for (i, b) in buffers.enumerated() {
            let last = i == buffers.count - 1
            try writeDescriptor(UInt16(i), address: b.address, length: b.length,
                                flags: (b.writable ? DescriptorChain.flagWrite : 0) | (last ? 0 : DescriptorChain.flagNext),
                                next: last ? 0 : UInt16(i + 1), table: table)
        }
        let head = nextFree
        nextFree = (nextFree + 1) % size
        try writeDescriptor(head, address: table, length: UInt32(16 * buffers.count), flags: DescriptorChain.flagIndirect)
        return head
    }

    /// Puts `head` in the avail ring and publishes it.
    func publish(_ head: UInt16) throws {
        try memory.store(head, to: GuestAddress(availRing + 4 + 2 * UInt64(availIdx % size)))
        availIdx &+= 1
        try memory.store(availIdx, to: GuestAddress(availRing + 2))
    }

    @discardableResult
    func post(_ buffers: [(address: UInt64, length: UInt32, writable: Bool)]) throws -> UInt16 {
        let head = try makeChain(buffers)
        try publish(head)
        return head
    }

    /// Sets avail.idx directly (for hostile jumps).
    func setAvailIdx(_ value: UInt16) throws {
        availIdx = value
        try memory.store(value, to: GuestAddress(availRing + 2))
    }

    var usedIdx: UInt16 { (try? memory.load(UInt16.self, from: GuestAddress(usedRing + 2))) ?? 0 }
    var usedFlags: UInt16 { (try? memory.load(UInt16.self, from: GuestAddress(usedRing))) ?? 0 }
    var availEvent: UInt16 { (try? memory.load(UInt16.self, from: GuestAddress(usedRing + 4 + 8 * UInt64(size)))) ?? 0 }

    func usedElement(_ i: UInt16) throws -> (id: UInt32, length: UInt32) {
        let at = usedRing + 4 + 8 * UInt64(i % size)
        return (try memory.load(UInt32.self, from: GuestAddress(at)), try memory.load(UInt32.self, from: GuestAddress(at + 4)))
    }

    /// Used-ring entries the device added since the last call: (head, length).
    func takeUsed() throws -> [(head: UInt32, length: UInt32)] {
        var out: [(UInt32, UInt32)] = []
        while usedSeen != usedIdx {
            out.append(try usedElement(usedSeen))
            usedSeen &+= 1
        }
        return out
    }

    /// The bytes the device wrote into the first buffer of chain `head`.
    func firstBufferBytes(_ element: (head: UInt32, length: UInt32)) throws -> [UInt8] {
        let address = try memory.load(UInt64.self, from: GuestAddress(descriptorTable + 16 * UInt64(element.head)))
        return try memory.read(from: GuestAddress(address), count: Int(element.length))
    }

    func setAvailFlags(_ flags: UInt16) throws { try memory.store(flags, to: GuestAddress(availRing)) }
    func setUsedEvent(_ value: UInt16) throws { try memory.store(value, to: GuestAddress(availRing + 4 + 2 * UInt64(size))) }
}
