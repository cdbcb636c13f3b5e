import Foundation
import Testing
@testable import GuestMemory

/// RAM mapped copy-on-write from a file (a restore): reads see the file, writes
/// stay in the process, and a file of the wrong size is refused up front.
struct PrivateFileMemoryTests {
    static func file(_ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "skiff-ram-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func readsComeFromTheFileAndWritesNeverReachIt() throws {
        var bytes = [UInt8](repeating: 0, count: 0x20000)
        bytes[0x10] = 0xAB          // first range
        bytes[0x10000 + 0x20] = 0xCD  // second range, at guest 0x40000
        let path = try Self.file(bytes)
        defer { unlink(path) }
        let m = try GuestMemory(mappingPrivately: path, ranges: [(GuestAddress(0), 0x10000), (GuestAddress(0x40000), 0x10000)])
        #expect(m.backing == .privateFile)
        #expect(try m.load(UInt8.self, from: GuestAddress(0x10)) == 0xAB)
        #expect(try m.load(UInt8.self, from: GuestAddress(0x40020)) == 0xCD)
        try m.store(UInt64.max, to: GuestAddress(0x40000))
        #expect(try m.load(UInt64.self, from: GuestAddress(0x40000)) == UInt64.max)
        let onDisk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(onDisk == bytes, "a guest write reached the snapshot file")
    }

    @Test func aFileOfTheWrongSizeIsRefused() throws {
        let path = try Self.file([UInt8](repeating: 1, count: 0x8000))
        defer { unlink(path) }
        #expect(throws: GuestMemoryError.self) {
            try GuestMemory(mappingPrivately: path, ranges: [(GuestAddress(0), 0x10000)])
        }
        #expect(throws: GuestMemoryError.self) {
            try GuestMemory(mappingPrivately: path + ".missing", ranges: [(GuestAddress(0), 0x8000)])
        }
    }
}
