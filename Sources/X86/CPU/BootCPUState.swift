import GuestMemory

/// The registers a vCPU starts a kernel with, as plain values (the VMM turns
/// them into KVM's structures), plus the GDT and page tables they refer to.
public struct BootCPUState: Equatable, Sendable {
    public var rip: UInt64
    public var rsp: UInt64 = 0
    public var rsi: UInt64 = 0
    public var rbx: UInt64 = 0
    public var rflags: UInt64 = 0x2
    public var cr0: UInt64
    public var cr3: UInt64 = 0
    public var cr4: UInt64 = 0
    public var efer: UInt64 = 0
    public var code: Segment
    public var data: Segment
    public var taskState: Segment = .taskState
    public var gdtBase: UInt64 = Layout.bootGDT
    public var gdtLimit: UInt16
    public var idtBase: UInt64 = Layout.bootIDT
    public var idtLimit: UInt16 = 0

    static let cr0PE: UInt64 = 1 << 0
    static let cr0ET: UInt64 = 1 << 4
    static let cr0PG: UInt64 = 1 << 31
    static let cr4PAE: UInt64 = 1 << 5
    static let eferLME: UInt64 = 1 << 8
    static let eferLMA: UInt64 = 1 << 10

    /// PVH: 32-bit protected mode, paging off, %ebx = start_info (xen PVH ABI).
    public static func pvh(entry: UInt32, startInfo: GuestAddress) -> BootCPUState {
        // The PVH ABI promises no stack; give one anyway so a guest that pushes
        // before setting its own does not fault on the first push.
        BootCPUState(rip: UInt64(entry), rsp: Layout.bootStack, rbx: startInfo.rawValue, cr0: cr0PE | cr0ET,
                     code: .code32, data: .data, gdtLimit: gdtSize - 1)
    }

    /// Linux 64-bit boot protocol: long mode, identity-mapped paging of the first
    /// 4 GiB, %rsi = boot_params.
    public static func linux64(entry: UInt64, bootParams: GuestAddress) -> BootCPUState {
        BootCPUState(rip: entry, rsp: Layout.bootStack, rsi: bootParams.rawValue,
                     cr0: cr0PE | cr0ET | cr0PG, cr3: Layout.pml4, cr4: cr4PAE,
                     efer: eferLME | eferLMA, code: .code64, data: .data, gdtLimit: gdtSize - 1)
    }

    static let gdtSize: UInt16 = 5 * 8

    /// Writes the GDT (null, null, code, data, TSS) and, in long mode, the page tables.
    public func writeTables(to memory: GuestMemory) throws {
        let entries: [UInt64] = [0, 0, code.descriptor, data.descriptor, taskState.descriptor]
        var gdt = GuestStructure(count: entries.count * 8)
        for (i, e) in entries.enumerated() { gdt.put(e, at: i * 8) }
        try memory.write(gdt.bytes, to: GuestAddress(gdtBase))
        try memory.store(UInt64(0), to: GuestAddress(idtBase))
        if efer & BootCPUState.eferLME != 0 { try BootCPUState.writeIdentityPageTables(to: memory) }
    }

    /// PML4 → one PDPT → four page directories of 2 MiB pages: 0–4 GiB identity-mapped.
    static func writeIdentityPageTables(to memory: GuestMemory) throws {
        let present: UInt64 = 0x3  // present | writable
        try memory.store(Layout.pdpt | present, to: GuestAddress(Layout.pml4))
        var pdpt = GuestStructure(count: 4096)
        for i in 0..<4 { pdpt.put((Layout.pageDirectories + UInt64(i) * 0x1000) | present, at: i * 8) }
        try memory.write(pdpt.bytes, to: GuestAddress(Layout.pdpt))
        var directories = GuestStructure(count: 4 * 4096)
        for i in 0..<(4 * 512) { directories.put((UInt64(i) << 21) | present | 0x80, at: i * 8) } // 0x80: 2 MiB page
        try memory.write(directories.bytes, to: GuestAddress(Layout.pageDirectories))
    }
}
