import GuestMemory
import Testing
@testable import X86

/// ELF kernels built in memory: one PT_LOAD and a PT_NOTE with the Xen PVH entry.
struct ELFKernelTests {
    static func makeELF(paddr: UInt64 = 0x100000, filesz: UInt64 = 16, memsz: UInt64 = 64,
                        note: Bool = true, noteType: UInt32 = 18, entry: UInt32 = 0x100000,
                        phnum: UInt16 = 2) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 0x200)
        func put<T: FixedWidthInteger>(_ v: T, _ at: Int) {
            withUnsafeBytes(of: v.littleEndian) { for (i, x) in $0.enumerated() { b[at + i] = x } }
        }
        b[0] = 0x7F; b[1] = 0x45; b[2] = 0x4C; b[3] = 0x46
        b[4] = 2; b[5] = 1; b[6] = 1
        put(UInt16(2), 16); put(UInt16(62), 18); put(UInt32(1), 20)
        put(UInt64(0x40), 32)            // e_phoff
        put(UInt16(64), 52); put(UInt16(56), 54); put(phnum, 56)
        // PT_LOAD at file offset 0x100.
        put(UInt32(1), 0x40); put(UInt64(0x100), 0x48); put(paddr, 0x40 + 24)
        put(filesz, 0x40 + 32); put(memsz, 0x40 + 40)
        for i in 0..<16 { b[0x100 + i] = UInt8(0xA0 + i) }
        // PT_NOTE at file offset 0x180: namesz 4 "Xen\0", descsz 4, type 18.
        if note {
            put(UInt32(4), 0x78); put(UInt64(0x180), 0x80); put(UInt64(20), 0x78 + 32)
            put(UInt32(4), 0x180); put(UInt32(4), 0x184); put(noteType, 0x188)
            b[0x18C] = 0x58; b[0x18D] = 0x65; b[0x18E] = 0x6E; b[0x18F] = 0
            put(entry, 0x190)
        }
        return b
    }

    @Test func findsThePVHEntryAndLoadsSegmentsWithBSSZeroed() throws {
        let bytes = Self.makeELF()
        let elf = try ELFKernel(bytes)
        #expect(elf.pvhEntry == 0x100000)
        #expect(elf.end == 0x100040)
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 4 << 20)])
        try memory.write([UInt8](repeating: 0xFF, count: 64), to: GuestAddress(0x100000))
        try elf.load(bytes, into: memory)
        let loaded = try memory.read(from: GuestAddress(0x100000), count: 64)
        #expect(Array(loaded.prefix(16)) == (0..<16).map { UInt8(0xA0 + $0) })
        #expect(loaded.dropFirst(16).allSatisfy { $0 == 0 })
    }

    @Test func refusesAnELFWithoutPVHNote() {
        #expect(throws: BootError.self) { try ELFKernel(Self.makeELF(note: false)) }
        #expect(throws: BootError.self) { try ELFKernel(Self.makeELF(noteType: 17)) }
    }

    @Test func refusesHostileHeaders() {
        // File size larger than memory size.
        #expect(throws: BootError.self) { try ELFKernel(Self.makeELF(filesz: 128, memsz: 64)) }
        // Segment data past the end of the file.
        #expect(throws: BootError.self) { try ELFKernel(Self.makeELF(filesz: 0x1000, memsz: 0x1000)) }
        // Address that wraps.
        #expect(throws: BootError.self) { try ELFKernel(Self.makeELF(paddr: UInt64.max - 8)) }
        // Program headers past the end of the file.
        #expect(throws: BootError.self) { try ELFKernel(Self.makeELF(phnum: 60)) }
        // Truncated.
        #expect(throws: BootError.self) { try ELFKernel(Array(Self.makeELF().prefix(40))) }
        #expect(throws: BootError.self) { try ELFKernel(Array("not an elf".utf8)) }
    }

    @Test func segmentOutsideGuestRAMIsRefusedBeforeCopying() throws {
        let bytes = Self.makeELF(paddr: 0x3F_FFF0)
        let elf = try ELFKernel(bytes)
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 4 << 20)])
        #expect(throws: BootError.self) { try elf.load(bytes, into: memory) }
        #expect(try memory.read(from: GuestAddress(0x3F_FFF0), count: 16) == [UInt8](repeating: 0, count: 16))
    }
}

struct PVHStartInfoTests {
    @Test func layoutMatchesTheXenABI() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 2 << 20)])
        let map = MemoryMap.e820(ramSize: 2 << 20)
        let info = PVHStartInfo(commandLine: GuestAddress(0x20000), initrd: (GuestAddress(0x150000), 0x4000),
                                rsdp: GuestAddress(0xE0000), memoryMap: map)
        let at = try info.write(to: memory)
        #expect(at == GuestAddress(Layout.pvhStartInfo))
        #expect(try memory.load(UInt32.self, from: at) == 0x336E_C578)
        #expect(try memory.load(UInt32.self, from: GuestAddress(at.rawValue + 4)) == 1)
        #expect(try memory.load(UInt32.self, from: GuestAddress(at.rawValue + 12)) == 1)
        let modlist = try memory.load(UInt64.self, from: GuestAddress(at.rawValue + 16))
        #expect(try memory.load(UInt64.self, from: GuestAddress(modlist)) == 0x150000)
        #expect(try memory.load(UInt64.self, from: GuestAddress(modlist + 8)) == 0x4000)
        #expect(try memory.load(UInt64.self, from: GuestAddress(at.rawValue + 24)) == 0x20000)
        #expect(try memory.load(UInt64.self, from: GuestAddress(at.rawValue + 32)) == 0xE0000)
        let mapAt = try memory.load(UInt64.self, from: GuestAddress(at.rawValue + 40))
        #expect(try memory.load(UInt32.self, from: GuestAddress(at.rawValue + 48)) == UInt32(map.count))
        for (i, e) in map.enumerated() {
            let entry = GuestAddress(mapAt + UInt64(i * 24))
            #expect(try memory.load(UInt64.self, from: entry) == e.address)
            #expect(try memory.load(UInt64.self, from: GuestAddress(entry.rawValue + 8)) == e.size)
            #expect(try memory.load(UInt32.self, from: GuestAddress(entry.rawValue + 16)) == e.kind.rawValue)
        }
    }
}

struct BootCPUStateTests {
    @Test func gdtDescriptorsEncodeFlatSegments() {
        #expect(Segment.code64.descriptor == 0x00AF_9B00_0000_FFFF)
        #expect(Segment.code32.descriptor == 0x00CF_9B00_0000_FFFF)
        #expect(Segment.data.descriptor == 0x00CF_9300_0000_FFFF)
    }

    @Test func longModeEntryIdentityMapsFourGiB() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 2 << 20)])
        let state = BootCPUState.linux64(entry: 0x100200, bootParams: GuestAddress(Layout.zeroPage))
        try state.writeTables(to: memory)
        #expect(state.cr3 == Layout.pml4)
        #expect(state.rsi == Layout.zeroPage)
        let pdpte = try memory.load(UInt64.self, from: GuestAddress(Layout.pml4)) & ~0xFFF
        #expect(pdpte == Layout.pdpt)
        // The last 2 MiB page of the fourth directory maps 4 GiB - 2 MiB.
        let pd3 = try memory.load(UInt64.self, from: GuestAddress(Layout.pdpt + 24)) & ~0xFFF
        let last = try memory.load(UInt64.self, from: GuestAddress(pd3 + 511 * 8))
        #expect(last & ~0xFFF == 0xFFE0_0000)
        #expect(last & 0x83 == 0x83)
    }
}

struct CPUIDSetupTests {
    @Test func eachVCPUGetsItsAPICIdAndTheHypervisorBit() {
        let host = [CPUIDEntry(function: 1, ebx: 0xFF00_0800, ecx: 0), CPUIDEntry(function: 0xB, index: 1)]
        let vcpu3 = CPUIDSetup.entries(fromSupported: host, vcpu: 3, vcpuCount: 4)
        #expect(vcpu3[0].ebx >> 24 == 3)
        #expect((vcpu3[0].ebx >> 16) & 0xFF == 4)
        #expect(vcpu3[0].ebx & 0xFFFF == 0x0800)
        #expect(vcpu3[0].ecx & (1 << 31) != 0)
        #expect(vcpu3[1].edx == 3)
        #expect(vcpu3[1].ebx == 4)
    }
}
