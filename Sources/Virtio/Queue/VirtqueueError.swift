import GuestMemory

/// Why the device refused what the driver put in a virtqueue. Every value here comes
/// from guest-controlled memory or registers; none of them is a host bug.
public enum VirtqueueError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Queue size is zero, not a power of two, or above the device's maximum.
    case invalidSize(UInt16, max: UInt16)
    /// A ring address does not meet the alignment §2.7 requires.
    case misalignedRing(String, address: UInt64)
    /// A ring does not lie entirely in guest RAM.
    case ringOutsideMemory(String, address: UInt64, length: UInt64)
    /// The queue was used before the driver set QueueReady.
    case notReady
    /// `avail.idx` moved further than the queue size past the last entry we took.
    case availIndexJump(availIndex: UInt16, nextAvail: UInt16, size: UInt16)
    /// An avail ring entry or `next` field names a descriptor outside the table.
    case descriptorIndexOutOfRange(UInt16, tableSize: UInt32)
    /// More descriptors than the limit: a loop, or a chain longer than the queue.
    case chainTooLong(limit: Int)
    /// INDIRECT used without VIRTIO_F_INDIRECT_DESC.
    case indirectNotNegotiated
    /// An INDIRECT descriptor inside an indirect table (§2.7.5.3.1 forbids it).
    case nestedIndirect
    /// INDIRECT together with NEXT (§2.7.5.3.1 forbids it).
    case indirectWithNext
    /// Indirect table length zero, not a multiple of 16, or too many entries.
    case invalidIndirectLength(UInt32)
    /// The indirect table is not entirely guest RAM.
    case indirectTableOutsideMemory(address: UInt64, length: UInt32)
    /// A data buffer is not entirely guest RAM.
    case bufferOutsideMemory(address: UInt64, length: UInt32)
    /// A data buffer of length zero.
    case zeroLengthBuffer(address: UInt64)
    /// A device-readable buffer after a device-writable one (§2.7.4.2).
    case readableAfterWritable
    /// A request without a device-writable buffer for its status byte.
    case noStatusBuffer
    /// A ring access failed after validation (the memory map changed under us).
    case memory(GuestMemoryError)

    public var description: String {
        switch self {
        case .invalidSize(let s, let max): return "queue size \(s) is not a power of two in 1...\(max)"
        case .misalignedRing(let r, let a): return "\(r) at 0x\(String(a, radix: 16)) is misaligned"
        case .ringOutsideMemory(let r, let a, let n): return "\(r) 0x\(String(a, radix: 16))+\(n) is outside guest RAM"
        case .notReady: return "queue is not ready"
        case .availIndexJump(let i, let n, let s): return "avail.idx \(i) is more than \(s) past \(n)"
        case .descriptorIndexOutOfRange(let i, let n): return "descriptor index \(i) outside a table of \(n)"
        case .chainTooLong(let l): return "descriptor chain longer than \(l) (loop?)"
        case .indirectNotNegotiated: return "indirect descriptor without VIRTIO_F_INDIRECT_DESC"
        case .nestedIndirect: return "indirect descriptor inside an indirect table"
        case .indirectWithNext: return "indirect descriptor with the NEXT flag"
        case .invalidIndirectLength(let n): return "indirect table length \(n) is not a non-zero multiple of 16"
        case .indirectTableOutsideMemory(let a, let n): return "indirect table 0x\(String(a, radix: 16))+\(n) is outside guest RAM"
        case .bufferOutsideMemory(let a, let n): return "buffer 0x\(String(a, radix: 16))+\(n) is outside guest RAM"
        case .zeroLengthBuffer(let a): return "zero-length buffer at 0x\(String(a, radix: 16))"
        case .readableAfterWritable: return "device-readable buffer after a device-writable one"
        case .noStatusBuffer: return "request has no device-writable buffer for its status"
        case .memory(let e): return "ring access failed: \(e)"
        }
    }
}
