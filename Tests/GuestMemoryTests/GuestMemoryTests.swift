import Testing
@testable import GuestMemory

struct GuestMemoryTests {
    static func twoRegions() throws -> GuestMemory {
        try GuestMemory(ranges: [(GuestAddress(0), 0x10000), (GuestAddress(0x20000), 0x10000)])
    }

    @Test func scalarsAreLittleEndianAndUnalignedIsFine() throws {
        let m = try Self.twoRegions()
        try m.store(UInt32(0x1122_3344), to: GuestAddress(0x1001))
        #expect(try m.read(from: GuestAddress(0x1001), count: 4) == [0x44, 0x33, 0x22, 0x11])
        #expect(try m.load(UInt32.self, from: GuestAddress(0x1001)) == 0x1122_3344)
    }

    @Test func accessesOutsideRAMAreRefused() throws {
        let m = try Self.twoRegions()
        #expect(throws: GuestMemoryError.invalidAddress(GuestAddress(0x10000))) {
            try m.load(UInt8.self, from: GuestAddress(0x10000))
        }
        // Straddling the end of a region into the gap.
        #expect(throws: GuestMemoryError.self) { try m.load(UInt32.self, from: GuestAddress(0xFFFE)) }
        #expect(throws: GuestMemoryError.self) { try m.buffer(at: GuestAddress(0x2FFFF), length: 2) }
        // Wrapping lengths.
        #expect(throws: GuestMemoryError.self) { try m.buffer(at: GuestAddress(0x100), length: UInt64.max) }
        #expect(throws: GuestMemoryError.self) { try m.zero(GuestAddress(UInt64.max - 1), length: 4) }
        #expect(!m.isValid(GuestAddress(0x20000), length: 0x10001))
        #expect(m.isValid(GuestAddress(0x20000), length: 0x10000))
    }

    @Test func failedWritesChangeNothing() throws {
        let m = try Self.twoRegions()
        #expect(throws: GuestMemoryError.self) {
            try m.write([UInt8](repeating: 0xAB, count: 16), to: GuestAddress(0xFFF8))
        }
        #expect(try m.read(from: GuestAddress(0xFFF8), count: 8) == [UInt8](repeating: 0, count: 8))
    }

    @Test func contiguousRegionsCanBeCrossed() throws {
        let m = try GuestMemory(ranges: [(GuestAddress(0), 0x1000), (GuestAddress(0x1000), 0x1000)])
        try m.write([1, 2, 3, 4], to: GuestAddress(0xFFE))
        #expect(try m.read(from: GuestAddress(0xFFE), count: 4) == [1, 2, 3, 4])
        // A single zero-copy buffer may not cross regions.
        #expect(throws: GuestMemoryError.self) { try m.buffer(at: GuestAddress(0xFFE), length: 4) }
    }

    @Test func handedOutBuffersAreMarkedAndTransientOnesAreNot() throws {
        let m = try Self.twoRegions()
        _ = try m.buffer(at: GuestAddress(0x20000 + 0x1ff0), length: 0x20) // pages 17 and 18 of the file
        #expect(m.handedOutPages.isSet(17) && m.handedOutPages.isSet(18))
        let view = try m.transientBuffer(at: GuestAddress(0x3000), length: 8)
        view.storeBytes(of: UInt64(7), as: UInt64.self)
        #expect(try m.load(UInt64.self, from: GuestAddress(0x3000)) == 7) // the same bytes
        #expect(!m.handedOutPages.isSet(3) && !m.writtenPages.isSet(3)) // the caller's to mark
        m.markWritten(GuestAddress(0x3000), length: 8)
        #expect(m.writtenPages.isSet(3))
        // Bounds are checked as for `buffer`.
        #expect(throws: GuestMemoryError.self) { try m.transientBuffer(at: GuestAddress(0xFFFE), length: 4) }
    }

    @Test func badLayoutsAreRefused() {
        #expect(throws: GuestMemoryError.self) { try GuestMemory(ranges: []) }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(ranges: [(GuestAddress(0), 100)]) }
        #expect(throws: GuestMemoryError.self) {
            try GuestMemory(ranges: [(GuestAddress(0), 0x2000), (GuestAddress(0x1000), 0x1000)])
        }
    }

    @Test func memoryIsBackedByOneFileForSnapshots() throws {
        let m = try Self.twoRegions()
        #expect(m.fileDescriptor >= 0)
        #expect(m.totalSize == 0x20000)
        #expect(m.regions.map(\.fileOffset) == [0, 0x10000])
    }
}
