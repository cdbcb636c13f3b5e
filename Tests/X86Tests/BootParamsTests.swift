import GuestMemory
import Testing
@testable import X86

struct E820Tests {
    @Test func smallGuestHasBaseMemoryReservedAreaAndHighMemory() {
        let map = MemoryMap.e820(ramSize: 64 << 20)
        #expect(map == [
            E820Entry(address: 0, size: 0x9FC00, kind: .ram),
            E820Entry(address: 0x9FC00, size: 0x100000 - 0x9FC00, kind: .reserved),
            E820Entry(address: 0x100000, size: (64 << 20) - 0x100000, kind: .ram),
        ])
    }

    @Test func largeGuestIsSplitAroundTheMMIOHole() {
        let size: UInt64 = 4 << 30
        let map = MemoryMap.e820(ramSize: size)
        #expect(map.count == 4)
        #expect(map[2] == E820Entry(address: 0x100000, size: 0xC000_0000 - 0x100000, kind: .ram))
        #expect(map[3] == E820Entry(address: 0x1_0000_0000, size: size - 0xC000_0000, kind: .ram))
        let ram = map.filter { $0.kind == .ram }.reduce(0) { $0 + $1.size }
        #expect(ram == size - (0x100000 - 0x9FC00))
        #expect(MemoryMap.ramRanges(size: size).map(\.start) == [0, 0x1_0000_0000])
        #expect(MemoryMap.ramRanges(size: size).map(\.size).reduce(0, +) == size)
    }

    @Test func noEntryOverlapsTheHole() {
        for size: UInt64 in [8 << 20, 3 << 30, (3 << 30) + 4096, 6 << 30] {
            for e in MemoryMap.e820(ramSize: size) {
                #expect(e.address + e.size <= Layout.mmioHoleStart || e.address >= Layout.mmioHoleEnd)
            }
        }
    }
}

struct BootParamsTests {
    /// A minimal but valid bzImage header for boot protocol 2.15.
    static func fakeBzImage(protocol version: UInt16 = 0x020F, xloadflags: UInt16 = 1, setupSectors: UInt8 = 4,
                            payload: Int = 4096) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: (Int(setupSectors) + 1) * 512 + payload)
        func put<T: FixedWidthInteger>(_ v: T, _ at: Int) {
            withUnsafeBytes(of: v.littleEndian) { for (i, x) in $0.enumerated() { b[at + i] = x } }
        }
        put(setupSectors, 0x1F1)
        put(UInt16(0xAA55), 0x1FE)
        put(UInt8(0x6A), 0x201)                 // header ends at 0x26C
        put(UInt32(0x5372_6448), 0x202)         // "HdrS"
        put(version, 0x206)
        put(UInt8(1), 0x211)                    // LOADED_HIGH
        put(UInt32(0x7FFF_FFFF), 0x22C)         // initrd_addr_max
        put(UInt32(0x20_0000), 0x230)           // kernel_alignment
        put(UInt8(1), 0x234)                    // relocatable
        put(xloadflags, 0x236)
        put(UInt32(2047), 0x238)                // cmdline_size
        put(UInt64(0x100_0000), 0x258)          // pref_address
        put(UInt32(0x40_0000), 0x260)           // init_size
        return b
    }

    @Test func parsesTheSetupHeader() throws {
        let image = try BzImage(Self.fakeBzImage())
        #expect(image.protocolVersion == 0x020F)
        #expect(image.kernelOffset == 5 * 512)
        #expect(image.loadAddress == 0x100_0000)
        #expect(image.entry == 0x100_0200)
        #expect(image.initSize == 0x40_0000)
        #expect(image.initrdAddressMax == 0x7FFF_FFFF)
        #expect(image.commandLineSize == 2048)
        #expect(image.setupHeader.count == 0x26C - 0x1F1)
    }

    @Test func zeroPageCarriesLoaderFieldsAndE820() throws {
        let image = try BzImage(Self.fakeBzImage())
        let e820 = MemoryMap.e820(ramSize: 128 << 20)
        let params = BootParams(setupHeader: image.setupHeader, commandLine: GuestAddress(Layout.commandLine),
                                commandLineSize: image.commandLineSize,
                                initrd: (GuestAddress(0x700_0000), 0x12345), e820: e820, rsdp: GuestAddress(0xE0000))
        let page = try params.bytes()
        let r = ImageReader(bytes: page)
        #expect(page.count == 4096)
        #expect(r.read(UInt32.self, at: 0x202) == 0x5372_6448)        // header copied
        #expect(r.read(UInt8.self, at: 0x210) == 0xFF)                // type_of_loader
        #expect(r.read(UInt8.self, at: 0x211)! & 0x81 == 0x81)        // LOADED_HIGH | CAN_USE_HEAP
        #expect(r.read(UInt32.self, at: 0x228) == UInt32(Layout.commandLine))
        #expect(r.read(UInt32.self, at: 0x218) == 0x700_0000)
        #expect(r.read(UInt32.self, at: 0x21C) == 0x12345)
        #expect(r.read(UInt64.self, at: 0x070) == 0xE0000)            // acpi_rsdp_addr
        #expect(r.read(UInt8.self, at: 0x1E8) == UInt8(e820.count))
        for (i, e) in e820.enumerated() {
            #expect(r.read(UInt64.self, at: 0x2D0 + i * 20) == e.address)
            #expect(r.read(UInt64.self, at: 0x2D0 + i * 20 + 8) == e.size)
            #expect(r.read(UInt32.self, at: 0x2D0 + i * 20 + 16) == e.kind.rawValue)
        }
    }

    @Test func refusesOldProtocolsAnd32BitOnlyKernels() {
        #expect(throws: BootError.self) { try BzImage(Self.fakeBzImage(protocol: 0x020B)) }
        #expect(throws: BootError.self) { try BzImage(Self.fakeBzImage(xloadflags: 0)) }
        #expect(throws: BootError.self) { try BzImage(Array(Self.fakeBzImage().prefix(0x240))) }
        #expect(throws: BootError.self) { try BzImage([UInt8](repeating: 0, count: 8192)) }
    }

    @Test func setupSectorsPastTheEndAreRefused() {
        var b = Self.fakeBzImage(payload: 0)
        b[0x1F1] = 200
        #expect(throws: BootError.self) { try BzImage(b) }
    }

    @Test func loadFailsCleanlyWhenTheKernelDoesNotFit() throws {
        let image = try BzImage(Self.fakeBzImage())
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 8 << 20)])  // kernel wants 16 MiB + 4 MiB
        #expect(throws: BootError.self) { try image.load(Self.fakeBzImage(), into: memory) }
    }
}

struct InitrdPlacementTests {
    @Test func goesAsHighAsAllowedAndPageAligned() throws {
        let at = try InitrdPlacement.address(size: 10_000, kernelEnd: 0x200000, ramSize: 64 << 20, addressMax: 0x37FF_FFFF)
        #expect(at % 4096 == 0)
        #expect(at + 10_000 <= 64 << 20)
        #expect(at > (64 << 20) - 8192 - 10_000)
    }

    @Test func respectsInitrdAddressMax() throws {
        let at = try InitrdPlacement.address(size: 4096, kernelEnd: 0x200000, ramSize: 1 << 30, addressMax: 0x0FFF_FFFF)
        #expect(at + 4096 <= 0x1000_0000)
    }

    @Test func staysBelowTheHoleOnLargeGuests() throws {
        let at = try InitrdPlacement.address(size: 1 << 20, kernelEnd: 0x200000, ramSize: 8 << 30, addressMax: .max)
        #expect(at + (1 << 20) <= Layout.mmioHoleStart)
    }

    @Test func refusesWhenItWouldOverlapTheKernel() {
        #expect(throws: BootError.self) {
            try InitrdPlacement.address(size: 60 << 20, kernelEnd: 0x800000, ramSize: 64 << 20, addressMax: .max)
        }
        #expect(throws: BootError.self) {
            try InitrdPlacement.address(size: 0, kernelEnd: 0x800000, ramSize: 64 << 20, addressMax: .max)
        }
    }
}

struct CommandLineTests {
    @Test func writesNulTerminated() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        let at = try KernelCommandLine.write("console=ttyS0", to: memory)
        #expect(try memory.read(from: at, count: 14) == Array("console=ttyS0".utf8) + [0])
    }

    @Test func refusesTooLongOrNulBytes() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        #expect(throws: BootError.commandLineTooLong(length: 300, maximum: 256)) {
            try KernelCommandLine.write(String(repeating: "a", count: 300), to: memory, maximumSize: 256)
        }
        #expect(throws: BootError.self) { try KernelCommandLine.write("a\0b", to: memory) }
    }
}
