import GuestMemory

/// A descriptor chain taken from the avail ring and fully validated (§2.7.5):
/// every index in range, no loop, indirect tables well-formed, every buffer in guest
/// RAM, readable buffers before writable ones.
///
/// Structural faults (the chain cannot be walked) throw from `parse`; the device
/// then marks itself DEVICE_NEEDS_RESET. Faults in the buffers themselves leave a
/// walkable chain with `fault` set, so a device can still answer with an error status.
public struct DescriptorChain: Sendable {
    /// Descriptor flags (§2.7.5).
    public static let flagNext: UInt16 = 1
    public static let flagWrite: UInt16 = 2
    public static let flagIndirect: UInt16 = 4
    static let descriptorSize: UInt64 = 16

    /// The head index: what goes back in the used ring.
    public let head: UInt16
    /// All buffers in chain order (readable first, then writable, unless `fault`).
    public let buffers: [GuestBuffer]
    /// The first buffer-level fault found, if any.
    public let fault: VirtqueueError?

    public var readable: [GuestBuffer] { buffers.filter { !$0.isWritable } }
    public var writable: [GuestBuffer] { buffers.filter { $0.isWritable } }

    public init(head: UInt16, buffers: [GuestBuffer], fault: VirtqueueError? = nil) {
        self.head = head
        self.buffers = buffers
        self.fault = fault
    }

    /// One 16-byte descriptor (le64 addr, le32 len, le16 flags, le16 next). One
    /// checked view instead of four generic loads: this runs for every descriptor.
    private static func readDescriptor(_ at: GuestAddress, memory: GuestMemory) throws -> (UInt64, UInt32, UInt16, UInt16) {
        func decode(_ raw: UnsafeRawBufferPointer) -> (UInt64, UInt32, UInt16, UInt16) {
            (UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
             UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt16.self)),
             UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 14, as: UInt16.self)))
        }
        if let raw = try? memory.transientBuffer(at: at, length: descriptorSize) { // read here and now: no mark
            return decode(UnsafeRawBufferPointer(raw))
        }
        // An (unaligned, indirect) descriptor straddling two adjacent regions, or none at all.
        return try withUnsafeTemporaryAllocation(byteCount: Int(descriptorSize), alignment: 8) { raw in
            do { try memory.read(into: raw, from: at) } catch let e as GuestMemoryError { throw VirtqueueError.memory(e) }
            return decode(UnsafeRawBufferPointer(raw))
        }
    }

    /// Walks the chain starting at `head` in the table of `queue.size` descriptors.
    static func parse(head: UInt16, queue: QueueState, memory: GuestMemory) throws -> DescriptorChain {
        var table = queue.descriptorTable
        var tableSize = UInt32(queue.size)
        // §2.7.5.3.1: a chain is never longer than the queue size; this also stops loops.
        let limit = Int(queue.size)
        var index = head
        var inIndirect = false
        var count = 0
        var buffers: [GuestBuffer] = []
        var fault: VirtqueueError?
        var seenWritable = false

        while true {
            guard UInt32(index) < tableSize else {
                throw VirtqueueError.descriptorIndexOutOfRange(index, tableSize: tableSize)
            }
            count += 1
            guard count <= limit else { throw VirtqueueError.chainTooLong(limit: limit) }
            let at = GuestAddress(table &+ UInt64(index) &* descriptorSize)
            let (addr, len, flags, next) = try readDescriptor(at, memory: memory)

            if flags & flagIndirect != 0 {
                guard queue.indirect else { throw VirtqueueError.indirectNotNegotiated }
                guard !inIndirect else { throw VirtqueueError.nestedIndirect }
                guard flags & flagNext == 0 else { throw VirtqueueError.indirectWithNext }
                guard len > 0, UInt64(len) % descriptorSize == 0, UInt64(len) / descriptorSize <= UInt64(limit) else {
                    throw VirtqueueError.invalidIndirectLength(len)
                }
                guard memory.containsRange(GuestAddress(addr), length: UInt64(len)) else {
                    throw VirtqueueError.indirectTableOutsideMemory(address: addr, length: len)
                }
                table = addr
                tableSize = len / UInt32(descriptorSize)
                index = 0
                inIndirect = true
                count -= 1 // the indirect descriptor itself carries no data
                continue
            }

            let writable = flags & flagWrite != 0
            if fault == nil {
                if len == 0 {
                    fault = .zeroLengthBuffer(address: addr)
                } else if !memory.containsRange(GuestAddress(addr), length: UInt64(len)) {
                    fault = .bufferOutsideMemory(address: addr, length: len)
                } else if !writable && seenWritable {
                    fault = .readableAfterWritable
                }
            }
            seenWritable = seenWritable || writable
            buffers.append(GuestBuffer(address: GuestAddress(addr), length: len, isWritable: writable))

            guard flags & flagNext != 0 else { break }
            index = next
        }
        return DescriptorChain(head: head, buffers: buffers, fault: fault)
    }
}
