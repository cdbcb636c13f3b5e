/// Everything a split virtqueue is, as plain data: what the driver programmed
/// through the transport plus the device's two ring cursors. Snapshots save it;
/// `SplitQueue(state:memory:)` re-validates it on restore.
public struct QueueState: Codable, Equatable, Sendable {
    /// The largest size the device offers (QueueNumMax).
    public var maxSize: UInt16
    /// The size the driver chose (QueueNum).
    public var size: UInt16
    public var ready: Bool = false
    /// Guest-physical addresses of the descriptor table, driver (avail) and device (used) areas.
    public var descriptorTable: UInt64 = 0
    public var availRing: UInt64 = 0
    public var usedRing: UInt64 = 0
    /// Next avail ring entry the device will take (free-running, wraps at 2^16).
    public var nextAvail: UInt16 = 0
    /// Next used ring entry the device will fill (free-running, equals used.idx).
    public var nextUsed: UInt16 = 0
    /// Negotiated VIRTIO_F_EVENT_IDX / VIRTIO_F_INDIRECT_DESC.
    public var eventIdx: Bool = false
    public var indirect: Bool = false
    /// used.idx at the last interrupt we sent, for the EVENT_IDX rule; nil before the first.
    public var signalledUsed: UInt16? = nil

    public init(maxSize: UInt16) {
        self.maxSize = maxSize
        self.size = maxSize
    }
}
