import GuestMemory

/// One validated piece of a descriptor chain: a guest RAM range and its direction.
public struct GuestBuffer: Equatable, Sendable {
    public var address: GuestAddress
    public var length: UInt32
    /// Device-writable (VIRTQ_DESC_F_WRITE) rather than device-readable.
    public var isWritable: Bool

    public init(address: GuestAddress, length: UInt32, isWritable: Bool) {
        self.address = address
        self.length = length
        self.isWritable = isWritable
    }
}

/// Byte-stream helpers over a list of buffers: requests are defined as a stream
/// of bytes, and the device must not assume how the driver split it (§2.7.4.1).
extension Array where Element == GuestBuffer {
    public var totalLength: UInt64 { reduce(0) { $0 + UInt64($1.length) } }

    /// The buffers covering bytes `[offset, offset+length)` of the stream (clamped to its end).
    public func slice(from offset: UInt64, length: UInt64) -> [GuestBuffer] {
        var result: [GuestBuffer] = []
        var skip = offset
        var want = length
        for b in self where want > 0 {
            let len = UInt64(b.length)
            if skip >= len { skip -= len; continue }
            let n = Swift.min(len - skip, want)
            // Wrapping add: a buffer not yet checked against RAM may sit at the top of the
            // address space; the wrapped address then fails the RAM check instead of trapping.
            result.append(GuestBuffer(address: GuestAddress(b.address.rawValue &+ skip), length: UInt32(n), isWritable: b.isWritable))
            want -= n
            skip = 0
        }
        return result
    }

    /// Copies the stream's first `destination.count` bytes out of guest RAM.
    public func read(from memory: GuestMemory, into destination: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        for b in self where done < destination.count {
            let n = Swift.min(Int(b.length), destination.count - done)
            try memory.read(into: UnsafeMutableRawBufferPointer(rebasing: destination[done..<(done + n)]), from: b.address)
            done += n
        }
        guard done == destination.count else { throw GuestMemoryError.rangeOutOfBounds(first?.address ?? GuestAddress(0), length: UInt64(destination.count)) }
    }

    public func read(from memory: GuestMemory, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try read(from: memory, into: $0) }
        return bytes
    }

    /// Copies `source` into the stream; returns how many bytes fit.
    @discardableResult
    public func write(to memory: GuestMemory, from source: UnsafeRawBufferPointer) throws -> Int {
        var done = 0
        for b in self where done < source.count {
            let n = Swift.min(Int(b.length), source.count - done)
            try memory.write(UnsafeRawBufferPointer(rebasing: source[done..<(done + n)]), to: b.address)
            done += n
        }
        return done
    }

    /// Host views of all the buffers, split where a buffer crosses a region edge.
    // SAFETY: the views point into guest RAM and stay valid while `memory` lives;
    // callers that hand them to asynchronous I/O keep `memory` alive until it completes.
    public func hostBuffers(in memory: GuestMemory) throws -> [UnsafeMutableRawBufferPointer] {
        try flatMap { try memory.hostBuffers($0.address, length: UInt64($0.length)) }
    }
}
