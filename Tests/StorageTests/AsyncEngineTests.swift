import Foundation
import Testing
@testable import Storage

/// Writes then reads through the engine, waking on the eventfd like the device's epoll loop.
func engineRoundTrip(path: String, format: DiskFormat, synchronous: Bool, direct: Bool, inlineBytes: Int = 0) throws {
    let image = try DiskImageOpener.open(path: path, format: format, direct: direct)
    // inlineBytes 0 by default: every transfer on the I/O threads (the requests here are small).
    let engine = try AsyncDiskEngine(image: image, queueDepth: 8, inlineBytes: inlineBytes, synchronous: synchronous)
    #expect(engine.isAsynchronous == !synchronous)
    let count = 20
    let size = 8192
    let bufs = (0 ..< count).map { _ in try! AlignedBuffer(count: size) }
    for i in 0 ..< count {
        let data = pattern(size, seed: UInt64(i))
        data.withUnsafeBytes { bufs[i].bytes.copyMemory(from: $0) }
    }
    var results: [Result<Int, StorageError>] = []
    for i in 0 ..< count {
        // Two iovecs per request, and a stride that leaves holes.
        let b = bufs[i].bytes
        let parts = [UnsafeRawBufferPointer(rebasing: b[0 ..< 4096]), UnsafeRawBufferPointer(rebasing: b[4096...])]
        engine.submit(.write(offset: UInt64(i * 2 * size), buffers: parts)) { results.append($0) }
    }
    #expect(results.isEmpty) // never called from inside submit
    engine.submit(.flush) { results.append($0) }
    while engine.outstanding > 0 {
        var pfd = pollfd(fd: engine.completionFD, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pfd, 1, 5000) == 1)
        engine.processCompletions()
    }
    #expect(results.count == count + 1)
    for r in results { #expect((try? r.get()) != nil) }
    let readBufs = (0 ..< 2 * count).map { _ in try! AlignedBuffer(count: size) }
    var reads = 0
    for i in 0 ..< 2 * count {
        engine.submit(.read(offset: UInt64(i * size), buffers: [readBufs[i].bytes])) { r in
            #expect((try? r.get()) == size)
            reads += 1
        }
    }
    engine.drain()
    #expect(reads == 2 * count)
    for i in 0 ..< 2 * count {
        let expected = i % 2 == 0 ? pattern(size, seed: UInt64(i / 2)) : [UInt8](repeating: 0, count: size)
        #expect(Array(readBufs[i].bytes) == expected)
    }
    // Discard waits for in-flight I/O and then reads back as zeroes.
    engine.submit(.discard(offset: 0, length: UInt64(size))) { #expect((try? $0.get()) == 0) }
    engine.submit(.read(offset: 0, buffers: [readBufs[0].bytes])) { _ in }
    engine.drain()
    #expect(Array(readBufs[0].bytes) == [UInt8](repeating: 0, count: size))
    // Errors come back through the completion, typed.
    var failure: StorageError?
    engine.submit(.read(offset: image.virtualSize, buffers: [readBufs[0].bytes])) { if case .failure(let e) = $0 { failure = e } }
    engine.drain()
    #expect(failure?.kind == .outOfBounds)
}

@Suite struct AsyncEngineTests {
    @Test(arguments: [false, true]) func rawRoundTrip(synchronous: Bool) throws {
        let dir = TempDir()
        try RawImage.create(path: dir.file("d"), size: 8 << 20)
        try engineRoundTrip(path: dir.file("d"), format: .raw, synchronous: synchronous, direct: false)
    }

    /// The same with the small requests done inline on the submitting thread.
    @Test func rawInlineRoundTrip() throws {
        let dir = TempDir()
        try RawImage.create(path: dir.file("d"), size: 8 << 20)
        try engineRoundTrip(path: dir.file("d"), format: .raw, synchronous: false, direct: false, inlineBytes: 16384)
    }

    @Test func rawDirectRoundTrip() throws {
        let dir = TempDir()
        try RawImage.create(path: dir.file("d"), size: 8 << 20)
        try engineRoundTrip(path: dir.file("d"), format: .raw, synchronous: false, direct: true)
    }
}

@Suite struct AsyncQcow2EngineTests {
    @Test(arguments: [false, true]) func qcow2RoundTrip(synchronous: Bool) throws {
        let dir = TempDir()
        var o = Qcow2Image.CreateOptions()
        o.clusterSize = 4096 // requests span clusters: allocated, zero and unallocated runs mix
        try Qcow2Image.create(path: dir.file("d"), virtualSize: 8 << 20, options: o)
        try engineRoundTrip(path: dir.file("d"), format: .qcow2, synchronous: synchronous, direct: false)
        let check = try qemuImg("check", dir.file("d"))
        #expect(check.status == 0, "\(check.stdout)")
    }

    @Test func qcow2DirectRoundTrip() throws {
        let dir = TempDir()
        try Qcow2Image.create(path: dir.file("d"), virtualSize: 8 << 20)
        try engineRoundTrip(path: dir.file("d"), format: .qcow2, synchronous: false, direct: true)
    }

    /// After the first (allocating, synchronous) write, the same range maps to host
    /// extents and goes through the I/O threads.
    @Test func allocatedClustersMapToHost() throws {
        let dir = TempDir()
        try Qcow2Image.create(path: dir.file("d"), virtualSize: 1 << 20)
        let img = try Qcow2Image(path: dir.file("d"))
        #expect(try img.dataExtents(at: 0, length: 131072, forWrite: true).map(\.location) == [.synchronous])
        #expect(try img.dataExtents(at: 0, length: 131072, forWrite: false).map(\.location) == [.zero])
        try img.write(pattern(131072, seed: 1), at: 0)
        let ext = try img.dataExtents(at: 100, length: 131072 - 100, forWrite: true)
        #expect(ext.count == 2 || ext.count == 1)
        #expect(ext.allSatisfy { if case .host = $0.location { return true } else { return false } }, "\(ext)")
    }
}

/// A minimal in-memory image implementing only what a test double needs; the
/// engine's default mapping sends everything through the synchronous path.
final class MemoryImage: DiskImage {
    var bytes: [UInt8]
    init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }
    var virtualSize: UInt64 { UInt64(bytes.count) }
    var isReadOnly: Bool { false }
    var format: DiskFormat { .raw }
    var path: String { "<memory>" }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try checkRange(offset, UInt64(buffer.count))
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset) ..< Int(offset) + buffer.count])) }
    }
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try checkRange(offset, UInt64(buffer.count))
        bytes.replaceSubrange(Int(offset) ..< Int(offset) + buffer.count, with: buffer)
    }
    func flush() throws {}
    func discard(at offset: UInt64, length: UInt64) throws { try writeZeroes(at: offset, length: length) }
    func writeZeroes(at offset: UInt64, length: UInt64) throws {
        try checkRange(offset, length)
        bytes.replaceSubrange(Int(offset) ..< Int(offset + length), with: repeatElement(0, count: Int(length)))
    }
    func close() throws {}
}

@Suite struct EngineWithTestDoubleTests {
    @Test func defaultMappingRunsSynchronously() throws {
        let image = MemoryImage(size: 1 << 16)
        let engine = try AsyncDiskEngine(image: image, queueDepth: 4)
        let data = pattern(1000, seed: 3)
        var done = 0
        data.withUnsafeBytes { buf in
            engine.submit(.write(offset: 500, buffers: [buf])) { #expect((try? $0.get()) == 1000); done += 1 }
        }
        engine.drain()
        #expect(done == 1)
        #expect(Array(image.bytes[500 ..< 1500]) == data)
    }
}
