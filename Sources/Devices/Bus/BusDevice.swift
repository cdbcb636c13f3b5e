/// A device the guest reaches through port I/O or MMIO. `offset` is relative to the
/// start of the range the device was registered at; `data.count` is the access size.
///
/// Called from vCPU threads (and possibly several at once), so implementations
/// guard their own state.
public protocol BusDevice: AnyObject, Sendable {
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, data: UnsafeRawBufferPointer)
}

/// An interrupt the device can raise without knowing how it reaches the guest
/// (irqfd, KVM_IRQ_LINE, or a test double). Keeps `Devices` free of `KVM`.
public protocol InterruptLine: AnyObject, Sendable {
    /// Raise an edge-triggered interrupt.
    func trigger()
}
