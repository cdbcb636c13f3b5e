/// A virtio-mmio transport's registers and queues as plain data, for snapshots
/// and migration. Restoring re-validates all of it: a snapshot file is untrusted.
public struct VirtioTransportState: Codable, Equatable, Sendable {
    public var deviceType: UInt32
    public var status: UInt32
    public var deviceFeaturesSel: UInt32
    public var driverFeaturesSel: UInt32
    public var driverFeatures: UInt64
    public var queueSel: UInt32
    public var interruptStatus: UInt32
    public var configGeneration: UInt32
    public var queues: [QueueState]
}

/// Why saved transport state does not fit this device.
public struct VirtioStateError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public var description: String { "virtio state: \(message)" }
}
