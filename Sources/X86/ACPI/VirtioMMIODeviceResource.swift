/// The guest-visible resources of one virtio-mmio transport, as the DSDT describes
/// them: a register window and the GSI its interrupt arrives on.
public struct VirtioMMIODeviceResource: Sendable, Equatable {
    /// Guest-physical base of the register window (below 4 GiB).
    public var base: UInt64
    /// Size of the window in bytes (Skiff uses `Layout.virtioMMIOSize`).
    public var size: UInt64
    /// GSI on the IOAPIC.
    public var irq: UInt32

    public init(base: UInt64, size: UInt64, irq: UInt32) {
        self.base = base
        self.size = size
        self.irq = irq
    }

    /// The resources of the `index`th transport in Skiff's standard layout.
    public init(index: Int) {
        self.init(base: Layout.virtioMMIOBase + UInt64(index) * Layout.virtioMMIOSize,
                  size: Layout.virtioMMIOSize,
                  irq: Layout.firstVirtioIRQ + UInt32(index))
    }
}
