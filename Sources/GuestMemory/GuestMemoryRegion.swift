/// One contiguous piece of guest RAM: a guest-physical range mapped at a host
/// address, backed by a range of the guest memory file.
public struct GuestMemoryRegion: @unchecked Sendable {  // Sound because: immutable; the bytes behind the pointer are guest RAM.
    public let start: GuestAddress
    public let size: UInt64
    /// Where the region lives in the memory file (memfd), so snapshots can write
    /// the file and restores can map it.
    public let fileOffset: UInt64
    /// SAFETY: valid for `size` bytes until the owning `GuestMemory` is deinitialised.
    public let hostAddress: UnsafeMutableRawPointer

    public var end: UInt64 { start.rawValue + size }

    public func contains(_ address: GuestAddress) -> Bool {
        address.rawValue >= start.rawValue && address.rawValue < end
    }
}
