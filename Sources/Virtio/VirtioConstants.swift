/// Numbers from the virtio 1.2 specification shared by the transport and devices.
public enum VirtioFeature {
    /// §6: descriptors may point at a table of descriptors.
    public static let ringIndirectDesc: UInt64 = 1 << 28
    /// §2.7.7/§2.7.10: used_event / avail_event notification suppression.
    public static let ringEventIdx: UInt64 = 1 << 29
    /// A virtio 1.x (non-legacy) device; required by Skiff.
    public static let version1: UInt64 = 1 << 32
}

/// Bits of the device status register (§2.1).
public enum VirtioStatus {
    public static let acknowledge: UInt32 = 1
    public static let driver: UInt32 = 2
    public static let driverOK: UInt32 = 4
    public static let featuresOK: UInt32 = 8
    public static let deviceNeedsReset: UInt32 = 64
    public static let failed: UInt32 = 128
}

/// Device IDs (§5).
public enum VirtioDeviceType {
    public static let net: UInt32 = 1
    public static let block: UInt32 = 2
}
