import GuestMemory

/// The Linux `boot_params` ("zero page", arch/x86/include/uapi/asm/bootparam.h)
/// for the 64-bit boot protocol: the kernel's own setup header with the
/// loader's fields filled in, the e820 map, and the RSDP address.
public struct BootParams {
    public static let size = 4096
    static let e820MaxEntries = 128

    public var setupHeader: [UInt8]
    public var commandLine: GuestAddress
    public var commandLineSize: Int
    public var initrd: (address: GuestAddress, size: UInt64)?
    public var e820: [E820Entry]
    public var rsdp: GuestAddress?

    public init(setupHeader: [UInt8], commandLine: GuestAddress, commandLineSize: Int,
                initrd: (address: GuestAddress, size: UInt64)?, e820: [E820Entry], rsdp: GuestAddress?) {
        self.setupHeader = setupHeader
        self.commandLine = commandLine
        self.commandLineSize = commandLineSize
        self.initrd = initrd
        self.e820 = e820
        self.rsdp = rsdp
    }

    /// The 4 KiB page, ready to copy into the guest.
    public func bytes() throws -> [UInt8] {
        guard e820.count <= BootParams.e820MaxEntries else { throw BootError.doesNotFit("\(e820.count) e820 entries") }
        var page = GuestStructure(count: BootParams.size)
        page.put(setupHeader, at: BzImage.headerStart)
        page.put(UInt8(0xFF), at: 0x210)                         // type_of_loader: undefined
        let loadflags = (setupHeader.count > 0x211 - BzImage.headerStart ? setupHeader[0x211 - BzImage.headerStart] : 0)
        page.put(loadflags | 0x01 | 0x80, at: 0x211)             // LOADED_HIGH | CAN_USE_HEAP
        page.put(UInt16(0xFE00), at: 0x224)                      // heap_end_ptr
        page.put(UInt32(truncatingIfNeeded: commandLine.rawValue), at: 0x228)
        if let initrd {
            page.put(UInt32(truncatingIfNeeded: initrd.address.rawValue), at: 0x218)
            page.put(UInt32(truncatingIfNeeded: initrd.size), at: 0x21C)
            page.put(UInt32(truncatingIfNeeded: initrd.address.rawValue >> 32), at: 0x0C0)
            page.put(UInt32(truncatingIfNeeded: initrd.size >> 32), at: 0x0C4)
        }
        if let rsdp { page.put(rsdp.rawValue, at: 0x070) }
        page.put(UInt8(e820.count), at: 0x1E8)
        for (i, entry) in e820.enumerated() {
            let at = 0x2D0 + i * 20
            page.put(entry.address, at: at)
            page.put(entry.size, at: at + 8)
            page.put(entry.kind.rawValue, at: at + 16)
        }
        return page.bytes
    }

    @discardableResult
    public func write(to memory: GuestMemory) throws -> GuestAddress {
        let address = GuestAddress(Layout.zeroPage)
        try memory.write(try bytes(), to: address)
        return address
    }
}
