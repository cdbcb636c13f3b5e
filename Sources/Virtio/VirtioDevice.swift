/// A virtio device behind a transport: the device-type specific half (§5). The
/// transport owns registers, feature negotiation, queues and interrupts; a device
/// owns its configuration space and what it does with the chains in its queues.
///
/// Every method except the properties is called with the transport's device lock
/// held, so a device needs no locking of its own.
public protocol VirtioDevice: AnyObject {
    /// Device ID (§5): 1 net, 2 block.
    var deviceType: UInt32 { get }
    /// Device-specific feature bits offered to the driver. The transport adds
    /// VIRTIO_F_VERSION_1, VIRTIO_F_INDIRECT_DESC and VIRTIO_F_EVENT_IDX.
    var deviceFeatures: UInt64 { get }
    /// QueueNumMax of each queue; the count is the number of queues.
    var queueMaxSizes: [UInt16] { get }

    /// Reads configuration space at `offset` (any width; bytes past the end read 0).
    func readConfig(offset: Int, into data: UnsafeMutableRawBufferPointer)
    /// Writes configuration space (ignored where the device has nothing writable).
    func writeConfig(offset: Int, data: UnsafeRawBufferPointer)

    /// Whether the driver's feature set is consistent (§2.2.2: dependencies such
    /// as one feature requiring another). False leaves FEATURES_OK clear.
    func acceptsFeatures(_ features: UInt64) -> Bool
    /// The driver set DRIVER_OK: start using the queues in `context`. Throwing marks
    /// the device DEVICE_NEEDS_RESET.
    func activate(_ context: VirtioDeviceContext) throws
    /// The driver notified queue `index` (on the event loop thread).
    func queueNotified(_ index: Int)
    /// The driver reset the device: forget the context and any request in flight.
    func reset()
    /// The VM is pausing (on the event loop thread, vCPUs already stopped):
    /// complete every request in flight, so that guest memory and the device's
    /// state stay still until the VM resumes. New work waits for the resume.
    func quiesce()
    /// The VM is ending and the event loop has stopped: complete every request
    /// accepted so far, make what the guest wrote durable, and release the
    /// backend. Called once; an error means guest data may not have reached the
    /// host, and is reported to the user.
    func shutdown() throws
}

/// Shared helpers for devices' configuration space.
extension VirtioDevice {
    /// Copies `[offset, offset+data.count)` of `config` into `data`, zero-filling past the end.
    public static func copyConfig(_ config: [UInt8], offset: Int, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count {
            let at = offset + i
            data[i] = at >= 0 && at < config.count ? config[at] : 0
        }
    }
}
