import Foundation
import PropertyBased
import Testing
@testable import Storage

/// Fixtures for the async-engine overlay tests (AsyncOverlayConcurrencyTests.swift).
struct OverlaySetup: Sendable, CustomStringConvertible {
    var cluster: UInt64
    var version: UInt32 = 3
    /// 1 KiB of metadata cache: L2 tables and refcount blocks are evicted all the time.
    var tinyCache = false
    /// O_DIRECT: the I/O threads then bypass the page cache.
    var direct = false
    /// Overlay made by `qemu-img create` instead of `Qcow2Image.create`.
    var qemuCreated = false
    /// Backing file format (raw, or a qcow2 made by qemu-img and filled by Skiff).
    var backingQcow2 = false
    /// Engine queue depth (small depths push requests through the backlog).
    var depth = 64

    var description: String {
        var s = "v\(version) \(cluster)-byte clusters, depth \(depth)"
        if tinyCache { s += ", tiny caches" }
        if direct { s += ", O_DIRECT" }
        if qemuCreated { s += ", qemu-img created" }
        s += backingQcow2 ? ", qcow2 backing" : ", raw backing"
        return s
    }
}

/// A backing file holding a pattern and a qcow2 overlay on it, plus the model.
final class OverlayFixture {
    let dir = TempDir()
    let setup: OverlaySetup
    let size: UInt64
    /// Expected guest-visible bytes of the overlay.
    var model: [UInt8]
    var overlay: String { dir.file("overlay.qcow2") }
    var base: String { dir.file(setup.backingQcow2 ? "base.qcow2" : "base.raw") }

    /// - Parameter backingSize: the backing file is this long (the rest of the overlay reads zeroes).
    init(_ setup: OverlaySetup, size: UInt64, backingSize: UInt64? = nil, seed: UInt64 = 77) throws {
        self.setup = setup
        self.size = size
        let bsize = backingSize ?? size
        let data = pattern(Int(bsize), seed: seed)
        model = data + [UInt8](repeating: 0, count: Int(size - bsize))
        if setup.backingQcow2 {
            let r = try qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", base, "\(bsize)")
            try #require(r.status == 0, "\(r.stderr)")
            let b = try retryingWhileLocked { try DiskImageOpener.open(path: base, format: .qcow2) }
            try b.write(data, at: 0)
            try b.close()
            try waitUntilNoWriter(base)
        } else {
            try RawImage.create(path: base, size: bsize)
            let b = try DiskImageOpener.open(path: base, format: .raw)
            try b.write(data, at: 0)
            try b.close()
            try waitUntilNoWriter(base)
        }
        let backingName = (base as NSString).lastPathComponent
        let format: DiskFormat = setup.backingQcow2 ? .qcow2 : .raw
        if setup.qemuCreated {
            let compat = setup.version == 2 ? "0.10" : "1.1"
            let r = try qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=\(setup.cluster),compat=\(compat)",
                                "-b", backingName, "-F", format.rawValue, overlay, "\(size)")
            try #require(r.status == 0, "\(r.stderr)")
        } else {
            var o = Qcow2Image.CreateOptions()
            o.clusterSize = setup.cluster
            o.version = setup.version
            o.backingFile = backingName
            o.backingFormat = format
            try Qcow2Image.create(path: overlay, virtualSize: size, options: o)
        }
    }

    /// Opens the overlay read-write the way the setup says.
    func open() throws -> DiskImage {
        try retryingWhileLocked { try openOnce() }
    }

    private func openOnce() throws -> DiskImage {
        if setup.tinyCache {
            return try Qcow2Image(file: ImageFile.open(overlay, readOnly: false, direct: setup.direct),
                                  chain: BackingChain(top: overlay), cacheBytes: 1024)
        }
        return try DiskImageOpener.open(path: overlay, format: .qcow2, direct: setup.direct)
    }

    /// After close(): a fresh open reads the model, `qemu-img check` is clean,
    /// `qemu-img compare` against a raw copy of the model says identical, and
    /// `qemu-img convert` produces the model byte for byte.
    func verifyOnDisk(_ context: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let again = try retryingWhileLocked { try DiskImageOpener.open(path: overlay, format: .qcow2, readOnly: true) }
        let back = try again.read(count: Int(size), at: 0)
        try again.close()
        #expect(firstDifference(back, model) == nil,
                "\(context): fresh open differs from the model at byte \(firstDifference(back, model) ?? -1)",
                sourceLocation: sourceLocation)
        let check = try qemuImg("check", overlay)
        #expect(check.status == 0, "\(context): qemu-img check: \(check.stdout) \(check.stderr)", sourceLocation: sourceLocation)
        let ref = dir.file("reference.raw")
        try Data(model).write(to: URL(fileURLWithPath: ref))
        let cmp = try qemuImg("compare", "-f", "qcow2", "-F", "raw", overlay, ref)
        #expect(cmp.status == 0, "\(context): qemu-img compare: \(cmp.stdout) \(cmp.stderr)", sourceLocation: sourceLocation)
        let flat = dir.file("flat.raw")
        let conv = try qemuImg("convert", "-f", "qcow2", "-O", "raw", overlay, flat)
        #expect(conv.status == 0, "\(context): qemu-img convert: \(conv.stderr)", sourceLocation: sourceLocation)
        let converted = [UInt8](try Data(contentsOf: URL(fileURLWithPath: flat)))
        #expect(converted.count == model.count && firstDifference(converted, model) == nil,
                "\(context): qemu-img convert output differs from the model at byte \(firstDifference(converted, model) ?? -1)",
                sourceLocation: sourceLocation)
        try? FileManager.default.removeItem(atPath: flat)
        try? FileManager.default.removeItem(atPath: ref)
    }
}

/// Runs `body`, retrying (up to 20 s) while it fails with `.locked`. Why: when any
/// test spawns a process (qemu-img), the child gets a copy of this process's fd
/// table and keeps it until its exec; an image this test just closed keeps its OFD
/// lock in that copy meanwhile, so an immediate reopen (or qemu-img) can find it
/// "open for writing elsewhere". A real lock held by a live opener never clears.
func retryingWhileLocked<T>(_ body: () throws -> T) throws -> T {
    let deadline = Date().addingTimeInterval(20)
    while true {
        do {
            return try body()
        } catch let e as StorageError where e.kind == .locked && Date() < deadline {
            usleep(5000)
        }
    }
}

/// Waits until no writer lock on `path` is left (see `retryingWhileLocked`), so a
/// qemu-img started next does not fail to get its locks.
func waitUntilNoWriter(_ path: String) throws {
    try retryingWhileLocked { try DiskImageOpener.open(path: path, readOnly: true).close() }
}

/// Index of the first differing byte (or length mismatch), nil when equal.
func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    if a == b { return nil }
    let n = min(a.count, b.count)
    for i in 0 ..< n where a[i] != b[i] { return i }
    return n
}

/// Submits requests to an engine with buffers that live until their completion,
/// records every failure, and counts completions.
final class EngineDriver {
    let engine: AsyncDiskEngine
    let image: DiskImage
    private(set) var submitted = 0
    private(set) var completed = 0
    /// Requests whose whole range the image mapped to plain host extents when
    /// submitted (candidates for the I/O threads; a sanity check that they are exercised).
    private(set) var hostMapped = 0
    var problems: [String] = []

    /// `inlineBytes` 0: every plain transfer goes to the I/O threads, whatever its
    /// size (the concurrency these tests are about).
    init(image: DiskImage, depth: Int, synchronous: Bool, inlineBytes: Int = 0) throws {
        self.image = image
        engine = try AsyncDiskEngine(image: image, queueDepth: depth, inlineBytes: inlineBytes, synchronous: synchronous)
    }

    private func noteMapping(_ offset: UInt64, _ length: Int, write: Bool) {
        guard engine.isAsynchronous, length > 0,
              let ext = try? image.dataExtents(at: offset, length: UInt64(length), forWrite: write) else { return }
        if ext.allSatisfy({ if case .host = $0.location { return true } else { return false } }) { hostMapped += 1 }
    }

    /// Splits `count` bytes into `pieces` iovec lengths (4 KiB multiples where possible, for O_DIRECT).
    static func split(_ count: Int, pieces: Int) -> [Int] {
        guard pieces > 1, count > 1 else { return [count] }
        var cuts: [Int] = []
        let step = count / pieces
        for k in 1 ..< pieces {
            var c = step * k
            if count >= 4096 * pieces { c = c / 4096 * 4096 }
            if c > (cuts.last ?? 0), c < count { cuts.append(c) }
        }
        var out: [Int] = []
        var prev = 0
        for c in cuts + [count] { out.append(c - prev); prev = c }
        return out
    }

    func write(_ offset: UInt64, _ bytes: [UInt8], pieces: Int = 1, then: (() -> Void)? = nil) {
        let buf = try! AlignedBuffer(count: bytes.count, alignment: 4096)
        bytes.withUnsafeBytes { buf.bytes.copyMemory(from: $0) }
        var iov: [UnsafeRawBufferPointer] = []
        var at = 0
        for n in Self.split(bytes.count, pieces: pieces) {
            iov.append(UnsafeRawBufferPointer(rebasing: buf.bytes[at ..< at + n]))
            at += n
        }
        noteMapping(offset, bytes.count, write: true)
        submitted += 1
        let expected = bytes.count
        engine.submit(.write(offset: offset, buffers: iov)) { [self] r in
            withExtendedLifetime(buf) {}
            completed += 1
            switch r {
            case .success(let n) where n == expected: break
            case .success(let n): problems.append("write \(offset)+\(expected) reported \(n) bytes")
            case .failure(let e): problems.append("write \(offset)+\(expected) failed: \(e)")
            }
            then?()
        }
    }

    /// Reads `count` bytes at `offset`; `check` gets the bytes and returns a problem or nil.
    func read(_ offset: UInt64, _ count: Int, pieces: Int = 1, check: @escaping ([UInt8]) -> String?) {
        let buf = try! AlignedBuffer(count: count, alignment: 4096)
        memset(buf.bytes.baseAddress!, 0xA5, count)
        var iov: [UnsafeMutableRawBufferPointer] = []
        var at = 0
        for n in Self.split(count, pieces: pieces) {
            iov.append(UnsafeMutableRawBufferPointer(rebasing: buf.bytes[at ..< at + n]))
            at += n
        }
        noteMapping(offset, count, write: false)
        submitted += 1
        engine.submit(.read(offset: offset, buffers: iov)) { [self] r in
            completed += 1
            switch r {
            case .success(let n) where n == count:
                if let p = check(Array(buf.bytes)) { problems.append("read \(offset)+\(count): \(p)") }
            case .success(let n): problems.append("read \(offset)+\(count) reported \(n) bytes")
            case .failure(let e): problems.append("read \(offset)+\(count) failed: \(e)")
            }
        }
    }

    func other(_ request: DiskIORequest) {
        submitted += 1
        engine.submit(request) { [self] r in
            completed += 1
            if case .failure(let e) = r { problems.append("\(request) failed: \(e)") }
        }
    }

    /// Waits for every outstanding request: `drain()`, or the device's way (poll the
    /// eventfd, then `processCompletions()`), which also runs requests submitted from completions.
    func complete(usePoll: Bool) {
        if !usePoll { engine.drain(); return }
        while engine.outstanding > 0 {
            var pfd = pollfd(fd: engine.completionFD, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 20_000) == 0 {
                problems.append("no completion signalled for 20 s with \(engine.outstanding) outstanding")
                engine.drain()
                return
            }
            engine.processCompletions()
        }
    }

    /// Reads the whole disk through the engine in chunks, all submitted before any completes.
    func readAll(_ size: UInt64, chunk: Int, expect model: [UInt8], usePoll: Bool) {
        var pos: UInt64 = 0
        var i = 0
        while pos < size {
            let n = Int(min(UInt64(chunk), size - pos))
            let at = Int(pos)
            read(pos, n, pieces: 1 + i % 3) { got in
                let want = Array(model[at ..< at + n])
                return firstDifference(got, want).map { "differs from the model at disk byte \(at + $0)" }
            }
            pos += UInt64(n)
            i += 1
        }
        complete(usePoll: usePoll)
    }
}

/// Per-byte check for a read that was in flight together with a batch of mutations:
/// every byte must equal the model before the batch or the model after it.
func beforeOrAfter(_ before: [UInt8], _ after: [UInt8], at offset: Int) -> ([UInt8]) -> String? {
    { got in
        for i in 0 ..< got.count {
            let b = before[offset + i], a = after[offset + i]
            if got[i] != b && got[i] != a {
                return "disk byte \(offset + i) is \(got[i]), neither \(b) (before) nor \(a) (after)"
            }
        }
        return nil
    }
}

/// A small deterministic generator for the fixed workloads.
struct XorShift {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next(_ n: UInt64) -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state % max(n, 1)
    }
    mutating func chance(_ percent: UInt64) -> Bool { next(100) < percent }
}

