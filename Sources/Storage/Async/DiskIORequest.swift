/// One guest block request for `AsyncDiskEngine`. Buffers are host memory (e.g.
/// guest RAM already bounds-checked by the device) that must stay valid until the
/// request's completion has run.
public enum DiskIORequest {
    /// Reads `offset ..< offset + sum(buffers)` into the buffers, in order (readv).
    case read(offset: UInt64, buffers: [UnsafeMutableRawBufferPointer])
    /// Writes the buffers, in order, at `offset` (writev).
    case write(offset: UInt64, buffers: [UnsafeRawBufferPointer])
    /// Makes every write completed so far durable.
    case flush
    /// Discards the range (reads back as zeroes).
    case discard(offset: UInt64, length: UInt64)
    /// Zeroes the range.
    case writeZeroes(offset: UInt64, length: UInt64)
}
