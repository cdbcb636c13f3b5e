import Foundation
import Testing
@testable import Storage

@Suite struct RawImageTests {
    @Test func createIsSparseAndReadsZero() throws {
        let dir = TempDir()
        let path = dir.file("a.raw")
        try RawImage.create(path: path, size: 64 << 20)
        let image = try DiskImageOpener.open(path: path, format: .raw)
        #expect(image.virtualSize == 64 << 20)
        #expect(image.format == .raw)
        #expect(try image.read(count: 4096, at: 1 << 20) == [UInt8](repeating: 0, count: 4096))
        #expect((image as? RawImage)?.allocatedBytes ?? .max < 1 << 20)
    }

    @Test func writeReadDiscard() throws {
        let dir = TempDir()
        let path = dir.file("a.raw")
        try RawImage.create(path: path, size: 1 << 20)
        let image = try DiskImageOpener.open(path: path, format: .raw)
        let data = pattern(10000, seed: 1)
        try image.write(data, at: 777)
        #expect(try image.read(count: 10000, at: 777) == data)
        try image.discard(at: 1000, length: 5000)
        var expected = data
        for i in 223 ..< 5223 { expected[i] = 0 }
        #expect(try image.read(count: 10000, at: 777) == expected)
        try image.flush()
    }

    @Test func outOfBoundsAndReadOnly() throws {
        let dir = TempDir()
        let path = dir.file("a.raw")
        try RawImage.create(path: path, size: 1 << 20)
        let image = try DiskImageOpener.open(path: path, format: .raw)
        expectStorageError(.outOfBounds) { _ = try image.read(count: 2, at: (1 << 20) - 1) }
        expectStorageError(.outOfBounds) { try image.writeZeroes(at: UInt64.max - 1, length: 4) }
        try image.close()
    }

    @Test func readOnlyRefusesWrites() throws {
        let dir = TempDir()
        let path = dir.file("a.raw")
        try RawImage.create(path: path, size: 1 << 20)
        let ro = try DiskImageOpener.open(path: path, format: .raw, readOnly: true)
        expectStorageError(.readOnly) { try ro.write([1], at: 0) }
        expectStorageError(.readOnly) { try ro.discard(at: 0, length: 512) }
    }

    @Test func probedRawRefusesQcow2Magic() throws {
        let dir = TempDir()
        let path = dir.file("a.raw")
        try RawImage.create(path: path, size: 1 << 20)
        do {
            let image = try DiskImageOpener.open(path: path)
            expectStorageError(.invalidArgument) { try image.write([0x51, 0x46, 0x49, 0xfb], at: 0) }
            try image.close()
        }
        let explicit = try DiskImageOpener.open(path: path, format: .raw)
        try explicit.write([0x51, 0x46, 0x49, 0xfb], at: 0)
    }

    /// The async engine asks `dataExtents` where writes go: sector 0 of a probed
    /// raw image must not be handed out as plain host I/O, or the signature check in
    /// `write` is bypassed (issue #7).
    @Test func probedRawSendsSectorZeroWritesThroughTheCheck() throws {
        let dir = TempDir()
        let path = dir.file("a.raw")
        try RawImage.create(path: path, size: 1 << 20)
        let image = try DiskImageOpener.open(path: path)
        #expect(try image.dataExtents(at: 0, length: 4096, forWrite: true).map(\.location) == [.synchronous])
        #expect(try image.dataExtents(at: 511, length: 1, forWrite: true).map(\.location) == [.synchronous])
        guard case .host = try image.dataExtents(at: 512, length: 512, forWrite: true).first?.location else {
            Issue.record("a write past sector 0 should stay async"); return
        }
        guard case .host = try image.dataExtents(at: 0, length: 512, forWrite: false).first?.location else {
            Issue.record("reads of sector 0 should stay async"); return
        }
        try RawImage.create(path: dir.file("b.raw"), size: 1 << 20)
        let explicit = try DiskImageOpener.open(path: dir.file("b.raw"), format: .raw)
        guard case .host = try explicit.dataExtents(at: 0, length: 512, forWrite: true).first?.location else {
            Issue.record("format=raw allows sector-0 writes"); return
        }
    }

    /// Piecewise writes (a byte at a time, or signatures of other formats QEMU
    /// would probe) are refused as well; harmless bytes at the same place are not.
    @Test func probedRawRefusesSignaturesPiecewiseAndOfOtherFormats() throws {
        let dir = TempDir()
        let path = dir.file("a.raw")
        try RawImage.create(path: path, size: 1 << 20)
        let image = try DiskImageOpener.open(path: path)
        try image.write([0x51, 0x46, 0x49], at: 0)
        let e = expectStorageError(.invalidArgument) { try image.write([0xfb], at: 3) }
        #expect(e?.description.contains("format=raw") == true)
        #expect(try image.read(count: 4, at: 0) == [0x51, 0x46, 0x49, 0])
        for sig in ["QED\0", "KDMV", "vhdxfile", "conectix"] {
            expectStorageError(.invalidArgument) { try image.write(Array(sig.utf8) + [UInt8](repeating: 0, count: 504), at: 0) }
        }
        try image.write(Array("QEDX".utf8), at: 0)
        expectStorageError(.invalidArgument) { try image.writeZeroes(at: 3, length: 512) } // would leave "QED\0"
        expectStorageError(.invalidArgument) { try image.discard(at: 3, length: 1) }
        try image.discard(at: 1, length: 1)                                               // "Q\0DX" is no signature
        try image.writeZeroes(at: 0, length: 512)                                         // all zeroes are no signature
        #expect(try image.read(count: 4, at: 0) == [0, 0, 0, 0])
        try image.close()
        #expect(try DiskImageOpener.detectFormat(path: path) == .raw)
    }

    @Test func lockRefusesSecondWriterAndReader() throws {
        let dir = TempDir()
        let path = dir.file("a.raw")
        try RawImage.create(path: path, size: 1 << 20)
        let first = try DiskImageOpener.open(path: path, format: .raw)
        let e = expectStorageError(.locked) { _ = try DiskImageOpener.open(path: path, format: .raw) }
        #expect(e?.description.contains("writing") == true)
        expectStorageError(.locked) { _ = try DiskImageOpener.open(path: path, format: .raw, readOnly: true) }
        // QEMU sees our lock too.
        _ = try qemuImg("--version")
        let io = try run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write 0 512", path])
        #expect(io.status != 0)
        #expect(io.stderr.contains("lock"))
        _ = first
    }

    @Test func twoReadersShare() throws {
        let dir = TempDir()
        let path = dir.file("a.raw")
        try RawImage.create(path: path, size: 1 << 20)
        let a = try DiskImageOpener.open(path: path, format: .raw, readOnly: true)
        let b = try DiskImageOpener.open(path: path, format: .raw, readOnly: true)
        expectStorageError(.locked) { _ = try DiskImageOpener.open(path: path, format: .raw) }
        _ = (a, b)
    }

    @Test func directIO() throws {
        let dir = TempDir()
        let path = dir.file("a.raw")
        try RawImage.create(path: path, size: 1 << 20)
        let image = try DiskImageOpener.open(path: path, format: .raw, direct: true)
        let data = pattern(3000, seed: 2)
        try image.write(data, at: 100) // unaligned: goes through a bounce buffer
        #expect(try image.read(count: 3000, at: 100) == data)
    }

    @Test func byteSizeParsing() throws {
        #expect(try ByteSize(parsing: "512M").bytes == 512 << 20)
        #expect(try ByteSize(parsing: "8G").bytes == 8 << 30)
        #expect(try ByteSize(parsing: "64KiB").bytes == 64 << 10)
        #expect(try ByteSize(parsing: "4096").bytes == 4096)
        #expect(try ByteSize(parsing: " \t256M \n").bytes == 256 << 20)
        #expect(ByteSize(bytes: 8 << 30).description == "8G")
        expectStorageError(.invalidArgument) { _ = try ByteSize(parsing: "12X") }
        expectStorageError(.invalidArgument) { _ = try ByteSize(parsing: "99999999999P") }
        expectStorageError(.invalidArgument) { _ = try ByteSize(parsing: "") }
        expectStorageError(.invalidArgument) { _ = try ByteSize(parsing: "  ") }
        expectStorageError(.invalidArgument) { _ = try ByteSize(parsing: "2 56M") }
        expectStorageError(.invalidArgument) { _ = try ByteSize(parsing: "-1M") }
    }
}
