import GuestMemory

/// A virtio-blk request decoded from a chain (§5.2.6): a 16-byte header
/// (type, reserved, sector), data, and a one-byte status at the very end. The
/// header, data and status may be split across descriptors any way the driver likes.
struct BlockRequest {
    /// Request types (§5.2.6).
    static let typeIn: UInt32 = 0
    static let typeOut: UInt32 = 1
    static let typeFlush: UInt32 = 4
    static let typeGetID: UInt32 = 8
    static let typeDiscard: UInt32 = 11
    static let typeWriteZeroes: UInt32 = 13
    /// Status values.
    static let statusOK: UInt8 = 0
    static let statusIOErr: UInt8 = 1
    static let statusUnsupported: UInt8 = 2
    static let headerSize: UInt64 = 16

    let head: UInt16
    let type: UInt32
    let sector: UInt64
    /// Device-readable bytes after the header (OUT data, discard segments).
    let dataOut: [GuestBuffer]
    /// Device-writable bytes before the status byte (IN data, the ID).
    let dataIn: [GuestBuffer]
    /// Where the status byte goes.
    let status: GuestAddress

    /// Decodes `chain`; nil when it has no header or no status byte.
    init?(_ chain: DescriptorChain, memory: GuestMemory) {
        let readable = chain.readable
        let writable = chain.writable
        let readableLength = readable.totalLength
        let writableLength = writable.totalLength
        guard chain.fault == nil, readableLength >= Self.headerSize, writableLength >= 1,
              let header = try? readable.read(from: memory, count: Int(Self.headerSize)),
              let statusBuffer = writable.slice(from: writableLength - 1, length: 1).first
        else { return nil }
        head = chain.head
        type = header.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) }
        sector = header.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
        dataOut = readable.slice(from: Self.headerSize, length: readableLength - Self.headerSize)
        dataIn = writable.slice(from: 0, length: writableLength - 1)
        status = statusBuffer.address
    }

    /// Where to put an error status for a chain that could not be decoded: the last
    /// byte of its last buffer, if that buffer is device-writable and in guest RAM.
    static func fallbackStatus(_ chain: DescriptorChain, memory: GuestMemory) -> GuestAddress? {
        guard let last = chain.buffers.last, last.isWritable, last.length > 0 else { return nil }
        let at = GuestAddress(last.address.rawValue &+ UInt64(last.length) &- 1)
        return memory.containsRange(at, length: 1) ? at : nil
    }
}
