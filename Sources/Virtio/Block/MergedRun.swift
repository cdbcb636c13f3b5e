/// A run of virtio-blk reads (or writes) whose disk ranges follow each other,
/// gathered while one notification's requests are popped so that they go to
/// the disk as one transfer: a sequential stream then costs one system call
/// and one I/O-thread hand-over per run instead of per request (QEMU's
/// virtio-blk merges adjacent requests the same way).
struct MergedRun {
    private(set) var isRead = true
    private(set) var offset: UInt64 = 0
    private(set) var length: UInt64 = 0
    /// Host views of the guest's data buffers, in disk order.
    private(set) var buffers: [UnsafeMutableRawBufferPointer] = []
    /// The requests and the data bytes each reports in its used length.
    private(set) var requests: [(request: BlockRequest, written: UInt32)] = []

    /// Whether a request for `offset ..< offset + length` in that direction can
    /// join: it starts where the run ends, and the run stays within the limits.
    func continues(isRead: Bool, offset: UInt64, length: UInt64, segments: Int) -> Bool {
        guard !requests.isEmpty, isRead == self.isRead else { return false }
        let (end, overflow) = self.offset.addingReportingOverflow(self.length)
        return !overflow && end == offset
            && self.length + length <= VirtioBlock.maxMergedBytes
            && buffers.count + segments <= VirtioBlock.maxMergedSegments
    }

    /// Appends a request (starting a run when empty); the caller has checked `continues`.
    mutating func add(_ request: BlockRequest, isRead: Bool, offset: UInt64, length: UInt64,
                      buffers: [UnsafeMutableRawBufferPointer], written: UInt32) {
        if requests.isEmpty {
            // A run of one request (random I/O) keeps that request's own array: no copy.
            self.isRead = isRead
            self.offset = offset
            self.length = length
            self.buffers = buffers
        } else {
            self.length += length
            self.buffers += buffers
        }
        requests.append((request, written))
    }

    /// Empties the run. The buffer array is let go rather than cleared in place:
    /// the submitted transfer still holds it, so clearing would copy it.
    mutating func reset() {
        buffers = []
        requests.removeAll(keepingCapacity: true)
        length = 0
    }
}
