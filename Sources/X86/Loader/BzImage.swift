import GuestMemory

/// A Linux `bzImage` booted through the 64-bit boot protocol
/// (Documentation/x86/boot.rst): the protected-mode part is loaded as is and
/// entered at its 64-bit entry point (+0x200) with a `boot_params` in %rsi.
public struct BzImage {
    /// The setup header, bytes 0x1F1 up to its declared end.
    public let setupHeader: [UInt8]
    public let protocolVersion: UInt16
    /// Offset in the file where the protected-mode kernel begins.
    public let kernelOffset: Int
    public let loadAddress: UInt64
    /// Memory the kernel needs from `loadAddress` while it decompresses itself.
    public let initSize: UInt64
    /// Highest address the initrd may end at (inclusive), per the header.
    public let initrdAddressMax: UInt64
    public let commandLineSize: Int

    static let headerStart = 0x1F1

    public static func isBzImage(_ bytes: [UInt8]) -> Bool {
        let r = ImageReader(bytes: bytes)
        return r.read(UInt16.self, at: 0x1FE) == 0xAA55 && r.read(UInt32.self, at: 0x202) == 0x5372_6448 // "HdrS"
    }

    public init(_ bytes: [UInt8]) throws {
        let r = ImageReader(bytes: bytes)
        guard bytes.count >= 0x250, BzImage.isBzImage(bytes) else { throw BootError.notAKernel("no bzImage boot header") }
        guard let version = r.read(UInt16.self, at: 0x206), version >= 0x020C else {
            throw BootError.unsupportedKernel("boot protocol older than 2.12 has no 64-bit entry")
        }
        guard let xloadflags = r.read(UInt16.self, at: 0x236), xloadflags & 1 != 0 else {
            throw BootError.unsupportedKernel("kernel has no 64-bit entry point (XLF_KERNEL_64)")
        }
        guard let loadflags = r.read(UInt8.self, at: 0x211), loadflags & 1 != 0 else {
            throw BootError.unsupportedKernel("kernel is not a bzImage (LOADED_HIGH clear)")
        }
        var setupSectors = Int(r.read(UInt8.self, at: 0x1F1) ?? 0)
        if setupSectors == 0 { setupSectors = 4 }
        let kernelOffset = (setupSectors + 1) * 512
        guard kernelOffset < bytes.count else { throw BootError.notAKernel("setup sectors run past the end of the file") }
        let headerEnd = 0x202 + Int(r.read(UInt8.self, at: 0x201) ?? 0)
        guard let header = r.slice(BzImage.headerStart, headerEnd - BzImage.headerStart) else {
            throw BootError.notAKernel("truncated setup header")
        }
        let relocatable = (r.read(UInt8.self, at: 0x234) ?? 0) != 0
        let preferred = r.read(UInt64.self, at: 0x258) ?? 0
        let alignment = UInt64(r.read(UInt32.self, at: 0x230) ?? 0)
        let kernelBytes = UInt64(bytes.count - kernelOffset)
        let initSize = max(UInt64(r.read(UInt32.self, at: 0x260) ?? 0), kernelBytes)
        var load = Layout.highMemoryStart
        if relocatable, preferred >= Layout.highMemoryStart, preferred < Layout.mmioHoleStart,
           alignment == 0 || preferred % alignment == 0 {
            load = preferred
        }
        self.setupHeader = Array(header)
        self.protocolVersion = version
        self.kernelOffset = kernelOffset
        self.loadAddress = load
        self.initSize = initSize
        self.initrdAddressMax = UInt64(r.read(UInt32.self, at: 0x22C) ?? 0x37FF_FFFF)
        self.commandLineSize = Int(r.read(UInt32.self, at: 0x238) ?? 255) + 1
    }

    /// The 64-bit entry point.
    public var entry: UInt64 { loadAddress + 0x200 }
    /// End of the memory the kernel may use while starting.
    public var end: UInt64 { loadAddress + initSize }

    public func load(_ bytes: [UInt8], into memory: GuestMemory) throws {
        guard memory.isValid(GuestAddress(loadAddress), length: initSize) else {
            throw BootError.doesNotFit("bzImage needs \(initSize) bytes at 0x\(String(loadAddress, radix: 16)); give the guest more memory")
        }
        try bytes.withUnsafeBytes { raw in
            try memory.write(UnsafeRawBufferPointer(rebasing: raw[kernelOffset...]), to: GuestAddress(loadAddress))
        }
    }
}
