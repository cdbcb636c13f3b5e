/// Where an initrd goes: as high as allowed (so the kernel's own decompression
/// and early allocations below it have room), page-aligned, above the kernel.
public enum InitrdPlacement {
    /// - Parameters:
    ///   - size: initrd size in bytes.
    ///   - kernelEnd: first byte the initrd may use.
    ///   - ramSize: guest RAM size.
    ///   - addressMax: highest byte address the initrd may occupy (boot header's `initrd_addr_max`).
    public static func address(size: UInt64, kernelEnd: UInt64, ramSize: UInt64, addressMax: UInt64) throws -> UInt64 {
        guard size > 0 else { throw BootError.doesNotFit("empty initrd") }
        let ramEnd = min(ramSize, Layout.mmioHoleStart)
        let ceiling = min(ramEnd, addressMax == UInt64.max ? addressMax : addressMax + 1)
        let floor = (kernelEnd + 0xFFF) & ~0xFFF
        guard ceiling >= size else {
            throw BootError.doesNotFit("initrd of \(size) bytes; give the guest more memory")
        }
        let address = (ceiling - size) & ~0xFFF
        guard address >= floor else {
            throw BootError.doesNotFit("initrd of \(size) bytes above the kernel (ends at 0x\(String(kernelEnd, radix: 16))); give the guest more memory")
        }
        return address
    }
}
