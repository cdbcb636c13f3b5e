import Foundation
import Testing
@testable import Storage

/// Hostile images: each bad field gives a typed error; nothing traps and nothing is written.
@Suite struct CorruptImageTests {
    /// A 16 MiB qcow2 image (64 KiB clusters) with guest cluster 0 and 5 written.
    func makeImage(_ dir: TempDir, name: String = "c.qcow2") throws -> (path: String, l1: UInt64, l2: UInt64) {
        let path = dir.file(name)
        try Qcow2Image.create(path: path, virtualSize: 16 << 20)
        let img = try Qcow2Image(path: path)
        try img.write(pattern(65536, seed: 1), at: 0)
        try img.write(pattern(100, seed: 2), at: 5 * 65536)
        let l1 = img.header.l1TableOffset
        try img.close()
        let l2 = try readBE64(path, at: l1) & Qcow2Entry.offsetMask
        return (path, l1, l2)
    }

    func readBE64(_ path: String, at offset: UInt64) throws -> UInt64 {
        let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? h.close() }
        try h.seek(toOffset: offset)
        return Array(h.readData(ofLength: 8)).be64(0)
    }

    func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? h.close() }
        try h.seek(toOffset: offset)
        h.write(Data(bytes))
    }

    func patch64(_ path: String, at offset: UInt64, _ v: UInt64) throws {
        var b = [UInt8](repeating: 0, count: 8); b.putBE64(v, at: 0)
        try patch(path, at: offset, b)
    }

    func patch32(_ path: String, at offset: UInt64, _ v: UInt32) throws {
        var b = [UInt8](repeating: 0, count: 4); b.putBE32(v, at: 0)
        try patch(path, at: offset, b)
    }

    func open(_ path: String, readOnly: Bool = false) throws -> DiskImage {
        try DiskImageOpener.open(path: path, format: .qcow2, readOnly: readOnly)
    }

    func fileBytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    @Test func truncatedFiles() throws {
        let dir = TempDir()
        let (path, _, _) = try makeImage(dir)
        let whole = try fileBytes(path)
        for cut in [0, 3, 50, 100, 65536 + 8, 2 * 65536 + 100] {
            try whole.prefix(cut).write(to: URL(fileURLWithPath: path))
            do {
                let img = try open(path, readOnly: true)
                // If the header survived, reading the data must fail cleanly or read zeroes.
                _ = try? img.read(count: 65536, at: 0)
            } catch let e as StorageError {
                #expect([.invalidFormat, .corruptImage].contains(e.kind), "cut \(cut): \(e)")
            }
        }
        try whole.prefix(50).write(to: URL(fileURLWithPath: path))
        expectStorageError(.invalidFormat) { _ = try open(path) }
    }

    @Test func headerFields() throws {
        let dir = TempDir()
        let cases: [(String, UInt64, [UInt8], StorageError.Kind)] = [
            ("bad magic", 0, [0, 0, 0, 0], .invalidFormat),
            ("version 4", 4, [0, 0, 0, 4], .unsupportedFeature),
            ("cluster_bits 30", 20, [0, 0, 0, 30], .invalidFormat),
            ("cluster_bits 8", 20, [0, 0, 0, 8], .invalidFormat),
            ("size 2^62", 24, [0x40, 0, 0, 0, 0, 0, 0, 0], .invalidFormat),
            ("encrypted", 32, [0, 0, 0, 1], .unsupportedFeature),
            ("L1 too small", 36, [0, 0, 0, 0], .corruptImage),
            ("L1 absurd", 36, [0x10, 0, 0, 0], .invalidFormat),
            ("L1 unaligned", 40, [0, 0, 0, 0, 0, 0, 0x30, 0x01], .corruptImage),
            ("L1 outside file", 40, [0, 0, 0, 1, 0, 0, 0, 0], .corruptImage),
            ("refcount table outside", 48, [0, 0, 0x10, 0, 0, 0, 0, 0], .corruptImage),
            ("refcount table on header", 48, [0, 0, 0, 0, 0, 0, 0, 0], .corruptImage),
            ("refcount table absurd", 56, [0xFF, 0, 0, 0], .invalidFormat),
            ("refcount order 7", 96, [0, 0, 0, 7], .invalidFormat),
            ("header length 50", 100, [0, 0, 0, 50], .invalidFormat),
            ("unknown incompatible bit", 72, [0, 0, 0, 0, 0, 0, 0x04, 0], .unsupportedFeature),
            ("external data file", 72, [0, 0, 0, 0, 0, 0, 0, 0x04], .unsupportedFeature),
            ("extended L2", 72, [0, 0, 0, 0, 0, 0, 0, 0x10], .unsupportedFeature),
            ("backing name outside cluster 0", 8, [0, 0, 0, 0, 0, 0x01, 0, 0], .invalidFormat),
        ]
        for (name, offset, bytes, kind) in cases {
            let (path, _, _) = try makeImage(dir, name: "h.qcow2")
            if name == "backing name outside cluster 0" { try patch32(path, at: 16, 10) }
            try patch(path, at: offset, bytes)
            do {
                _ = try open(path, readOnly: true)
                Issue.record("\(name): opened")
            } catch let e as StorageError {
                #expect(e.kind == kind, "\(name): \(e)")
                #expect(e.path == path, "\(name): no path in \(e)")
            }
            try FileManager.default.removeItem(atPath: path)
        }
    }

    @Test func unknownIncompatibleFeatureIsNamed() throws {
        let dir = TempDir()
        let (path, _, _) = try makeImage(dir)
        try patch(path, at: 72, [0x80, 0, 0, 0, 0, 0, 0, 0])
        let e = expectStorageError(.unsupportedFeature) { _ = try open(path, readOnly: true) }
        #expect(e?.context.contains("bit 63") == true, "\(String(describing: e))")
    }

    @Test func l1AndRefcountTablesOverlap() throws {
        let dir = TempDir()
        let (path, l1, _) = try makeImage(dir)
        try patch64(path, at: 48, l1) // refcount table moved onto the L1 table
        expectStorageError(.corruptImage) { _ = try open(path, readOnly: true) }
    }

    @Test func dirtyAndCorruptBits() throws {
        let dir = TempDir()
        for bit: UInt8 in [0x01, 0x02] {
            let (path, _, _) = try makeImage(dir, name: "d\(bit).qcow2")
            try patch(path, at: 79, [bit])
            expectStorageError(.corruptImage) { _ = try open(path) }
            let ro = try open(path, readOnly: true)
            #expect(try ro.read(count: 65536, at: 0) == pattern(65536, seed: 1))
        }
    }

    @Test func l1EntryBad() throws {
        let dir = TempDir()
        let (path, l1, l2) = try makeImage(dir)
        let fileSize = try fileBytes(path).count
        for (name, entry) in [("past end", UInt64(1) << 40 | Qcow2Entry.copied), ("reserved bits", l2 | 0x100),
                              ("unaligned", l2 + 512), ("points at refcount table", 65536 | Qcow2Entry.copied),
                              ("points at L1 table", l1 | Qcow2Entry.copied)] {
            try patch64(path, at: l1, entry)
            let before = try fileBytes(path)
            do {
                let img = try open(path)
                let e1 = expectStorageError(.corruptImage) { _ = try img.read(count: 10, at: 0) }
                expectStorageError(.corruptImage) { try img.write([1, 2, 3], at: 100) }
                #expect(e1 != nil, "\(name)")
                try? img.close()
            }
            #expect(try fileBytes(path) == before, "\(name): the image was modified")
            #expect(try fileBytes(path).count == fileSize)
        }
    }

    @Test func l2EntryBad() throws {
        let dir = TempDir()
        let (path, l1, l2) = try makeImage(dir)
        for (name, entry) in [("past end", UInt64(1) << 40 | Qcow2Entry.copied), ("reserved bits", UInt64(0x2) | 65536 * 10),
                              ("unaligned", UInt64(65536 * 3 + 512) | Qcow2Entry.copied), ("points at L1", l1 | Qcow2Entry.copied),
                              ("points at itself", l2 | Qcow2Entry.copied), ("points at header", Qcow2Entry.copied | Qcow2Entry.zeroFlag | 0)] {
            try patch64(path, at: l2 + 5 * 8, entry)
            let before = try fileBytes(path)
            do {
                let img = try open(path)
                if name == "points at header" {
                    // A zero flag with no host cluster is valid: reads as zeroes.
                    #expect(try img.read(count: 100, at: 5 * 65536) == [UInt8](repeating: 0, count: 100))
                    continue
                }
                expectStorageError(.corruptImage) { _ = try img.read(count: 10, at: 5 * 65536) }
                expectStorageError(.corruptImage) { try img.write([1, 2, 3], at: 5 * 65536) }
                // Other clusters still work.
                #expect(try img.read(count: 65536, at: 0) == pattern(65536, seed: 1))
            }
            #expect(try fileBytes(path) == before, "\(name): the image was modified")
        }
    }

    @Test func twoL1EntriesShareAnL2Table() throws {
        let dir = TempDir()
        let path = dir.file("s.qcow2")
        try Qcow2Image.create(path: path, virtualSize: 1 << 30)
        do {
            let img = try Qcow2Image(path: path)
            try img.write([1], at: 0)
        }
        let l1 = try Qcow2Image(path: path, readOnly: true).header.l1TableOffset
        try patch64(path, at: l1 + 8, try readBE64(path, at: l1))
        let img = try open(path, readOnly: true)
        _ = try img.read(count: 1, at: 0)
        expectStorageError(.corruptImage) { _ = try img.read(count: 1, at: 512 << 20) }
    }

    @Test func refcountTableEntryBad() throws {
        let dir = TempDir()
        let (path, _, _) = try makeImage(dir)
        try patch64(path, at: 65536, 1 << 40) // refcount block 0 far past the end
        let img = try open(path)
        #expect(try img.read(count: 65536, at: 0) == pattern(65536, seed: 1)) // reads need no refcounts
        let before = try fileBytes(path)
        expectStorageError(.corruptImage) { try img.write([9], at: 8 << 20) } // allocation does
        try? img.close()
        #expect(try fileBytes(path).count == before.count)
    }

    @Test func garbageCompressedCluster() throws {
        let dir = TempDir()
        let (path, _, l2) = try makeImage(dir)
        // Compressed entry for guest cluster 7 pointing at the data of cluster 0 (not deflate).
        let data0 = try readBE64(path, at: l2) & Qcow2Entry.offsetMask
        try patch64(path, at: l2 + 7 * 8, Qcow2Entry.compressed | data0 | (3 << 54))
        let img = try open(path)
        expectStorageError(.corruptImage) { _ = try img.read(count: 10, at: 7 * 65536) }
    }

    @Test func backingLoopsAndDepth() throws {
        let dir = TempDir()
        let a = dir.file("a.qcow2"), b = dir.file("b.qcow2")
        try Qcow2Image.create(path: a, virtualSize: 1 << 20)
        var o = Qcow2Image.CreateOptions()
        o.backingFile = "a.qcow2"
        try Qcow2Image.create(path: b, options: o)
        // Point a at b: a -> b -> a.
        let name = Array("b.qcow2".utf8)
        try patch(a, at: 65536 - 64, name)
        try patch64(a, at: 8, 65536 - 64)
        try patch32(a, at: 16, UInt32(name.count))
        let e = expectStorageError(.backingChain) { _ = try open(b) }
        #expect(e?.context.contains("loop") == true, "\(String(describing: e))")
        // Self-reference.
        let s = dir.file("self.qcow2")
        try Qcow2Image.create(path: s, virtualSize: 1 << 20)
        try patch(s, at: 65536 - 64, Array("self.qcow2".utf8))
        try patch64(s, at: 8, 65536 - 64)
        try patch32(s, at: 16, 10)
        expectStorageError(.backingChain) { _ = try open(s) }
        // Missing backing file.
        try patch(s, at: 65536 - 64, Array("gone.qcow2".utf8))
        expectStorageError(.backingChain) { _ = try open(s) }
        // Over-deep chain.
        try Qcow2Image.create(path: dir.file("d0.qcow2"), virtualSize: 1 << 20)
        for i in 1 ... BackingChain.maxDepth + 1 {
            var o = Qcow2Image.CreateOptions()
            o.backingFile = "d\(i - 1).qcow2"
            o.backingFormat = .qcow2
            do { try Qcow2Image.create(path: dir.file("d\(i).qcow2"), options: o) } catch {}
        }
        let deep = dir.file("d\(BackingChain.maxDepth + 1).qcow2")
        if FileManager.default.fileExists(atPath: deep) {
            expectStorageError(.backingChain) { _ = try open(deep) }
        } else {
            // Creating it already failed the depth check.
            expectStorageError(.backingChain) {
                var o = Qcow2Image.CreateOptions(); o.backingFile = "d\(BackingChain.maxDepth).qcow2"
                try Qcow2Image.create(path: deep, options: o)
            }
        }
    }

    @Test func outOfRangeRequests() throws {
        let dir = TempDir()
        let (path, _, _) = try makeImage(dir)
        let img = try open(path)
        let size = img.virtualSize
        expectStorageError(.outOfBounds) { _ = try img.read(count: 2, at: size - 1) }
        expectStorageError(.outOfBounds) { try img.write([1], at: size) }
        expectStorageError(.outOfBounds) { try img.discard(at: 0, length: size + 1) }
        expectStorageError(.outOfBounds) { try img.writeZeroes(at: .max, length: 2) }
        let before = try fileBytes(path).count
        try img.close()
        #expect(try fileBytes(path).count == before)
    }

    /// Sizes near 2^64 overflowed rounding up to whole sectors (a trap in `skiff image create`).
    @Test(arguments: [UInt64.max, UInt64.max - 510, (1 << 55) + 1] as [UInt64])
    func createRefusesSizesThatDoNotFit(size: UInt64) {
        let dir = TempDir()
        let e = expectStorageError(.invalidArgument) { try Qcow2Image.create(path: dir.file("big.qcow2"), virtualSize: size) }
        #expect(e?.description.contains("too large") == true)
    }

    /// A refcount already at its maximum cannot be incremented: with 64-bit refcounts
    /// the increment itself used to overflow (a trap) before the width check ran.
    @Test(arguments: [UInt32(4), 6])
    func incrementingAMaximalRefcountIsAnError(order: UInt32) throws {
        let dir = TempDir()
        var o = Qcow2Image.CreateOptions()
        o.refcountOrder = order
        try Qcow2Image.create(path: dir.file("r.qcow2"), virtualSize: 1 << 20, options: o)
        let img = try Qcow2Image(path: dir.file("r.qcow2"))
        try img.refcounts.setRefcount(0, img.refcounts.maxRefcount)
        let e = expectStorageError(.corruptImage) { try img.refcounts.adjust(0, by: 1) }
        #expect(e?.description.contains("overflow") == true)
        try img.refcounts.setRefcount(0, 1) // leave the image consistent for close
    }
}
