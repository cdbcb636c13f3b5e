import GuestMemory

/// The `hvm_start_info` block a PVH kernel receives in %ebx (Xen's
/// include/public/arch-x86/hvm/start_info.h, version 1): command line, modules
/// (the initrd), the RSDP and the memory map.
public struct PVHStartInfo: Equatable {
    public static let magic: UInt32 = 0x336E_C578
    public static let size = 56
    public static let memoryMapEntrySize = 24
    public static let moduleEntrySize = 32

    public var commandLine: GuestAddress?
    public var initrd: (address: GuestAddress, size: UInt64)?
    public var rsdp: GuestAddress?
    public var memoryMap: [E820Entry]

    public init(commandLine: GuestAddress?, initrd: (address: GuestAddress, size: UInt64)?,
                rsdp: GuestAddress?, memoryMap: [E820Entry]) {
        self.commandLine = commandLine
        self.initrd = initrd
        self.rsdp = rsdp
        self.memoryMap = memoryMap
    }

    public static func == (a: PVHStartInfo, b: PVHStartInfo) -> Bool {
        a.commandLine == b.commandLine && a.initrd?.address == b.initrd?.address
            && a.initrd?.size == b.initrd?.size && a.rsdp == b.rsdp && a.memoryMap == b.memoryMap
    }

    /// Writes the block, the module list and the memory map at their `Layout`
    /// addresses; returns the address of the block (the guest's %ebx).
    @discardableResult
    public func write(to memory: GuestMemory) throws -> GuestAddress {
        guard memoryMap.count <= Layout.pvhMemoryMapMaxEntries else {
            throw BootError.doesNotFit("\(memoryMap.count) memory map entries")
        }
        var block = GuestStructure(count: PVHStartInfo.size)
        block.put(PVHStartInfo.magic, at: 0)
        block.put(UInt32(1), at: 4)                                     // version
        block.put(UInt32(initrd == nil ? 0 : 1), at: 12)                // nr_modules
        block.put(initrd == nil ? 0 : Layout.pvhModuleList, at: 16)     // modlist_paddr
        block.put(commandLine?.rawValue ?? 0, at: 24)
        block.put(rsdp?.rawValue ?? 0, at: 32)
        block.put(Layout.pvhMemoryMap, at: 40)
        block.put(UInt32(memoryMap.count), at: 48)
        try memory.write(block.bytes, to: GuestAddress(Layout.pvhStartInfo))

        if let initrd {
            var module = GuestStructure(count: PVHStartInfo.moduleEntrySize)
            module.put(initrd.address.rawValue, at: 0)
            module.put(initrd.size, at: 8)
            try memory.write(module.bytes, to: GuestAddress(Layout.pvhModuleList))
        }
        var map = GuestStructure(count: memoryMap.count * PVHStartInfo.memoryMapEntrySize)
        for (i, entry) in memoryMap.enumerated() {
            let at = i * PVHStartInfo.memoryMapEntrySize
            map.put(entry.address, at: at)
            map.put(entry.size, at: at + 8)
            map.put(entry.kind.rawValue, at: at + 16)
        }
        try memory.write(map.bytes, to: GuestAddress(Layout.pvhMemoryMap))
        return GuestAddress(Layout.pvhStartInfo)
    }
}
