import Foundation
import PropertyBased
import Testing
@testable import Storage

// Many requests in flight through the REAL async engine (libaio) against a qcow2
// overlay on a backing file: concurrent allocating writes to the same and to
// neighbouring clusters, reads of the same ranges, barriers. Each workload also
// runs with `synchronous: true`. Results are checked against an in-memory model,
// through the engine, through a fresh open after close(), and with qemu-img.
//
// Ordering rule the checks rely on: the order among requests in flight together
// is undefined, so within one batch the ranges of mutating requests (write,
// discard, write-zeroes) never overlap; a read in the batch may see, byte for
// byte, either the value before the batch or the value after it.

/// How the overlay (and its backing file) is made and opened.
struct OverlaySetup: Sendable, CustomStringConvertible {
    var cluster: UInt64
    var version: UInt32 = 3
    /// 1 KiB of metadata cache: L2 tables and refcount blocks are evicted all the time.
    var tinyCache = false
    /// O_DIRECT: libaio is then really asynchronous (buffered AIO mostly completes inside io_submit).
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
    /// submitted (candidates for libaio; a sanity check that libaio is exercised).
    private(set) var hostMapped = 0
    var problems: [String] = []

    init(image: DiskImage, depth: Int, synchronous: Bool) throws {
        self.image = image
        engine = try AsyncDiskEngine(image: image, queueDepth: depth, synchronous: synchronous)
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

// MARK: - 1. Concurrent allocating writes to the same and to neighbouring clusters

@Suite struct AsyncOverlayConcurrencyTests {
    static let setups: [OverlaySetup] = [
        OverlaySetup(cluster: 4096),
        OverlaySetup(cluster: 65536, qemuCreated: true),
        OverlaySetup(cluster: 65536, backingQcow2: true, depth: 8),
        OverlaySetup(cluster: 4096, version: 2, qemuCreated: true, depth: 16),
        OverlaySetup(cluster: 512, tinyCache: true, depth: 4),
        OverlaySetup(cluster: 4096, direct: true),
        OverlaySetup(cluster: 65536, direct: true, depth: 8),
        OverlaySetup(cluster: 512, tinyCache: true, direct: true, qemuCreated: true),
    ]

    /// Batches of disjoint writes carved out of a few neighbouring clusters (several
    /// per cluster, sub-cluster, cluster-spanning and multi-cluster, in shuffled
    /// order, some as several iovecs), with reads of the same ranges in between,
    /// all submitted before any completion is processed.
    @Test(arguments: 0 ..< setups.count, [false, true])
    func concurrentAllocatingWrites(setup index: Int, synchronous: Bool) throws {
        let setup = Self.setups[index]
        let cs = setup.cluster
        let size: UInt64 = cs >= 65536 ? 8 << 20 : (cs == 512 ? 1 << 20 : 4 << 20)
        // The last 64 KiB (or more) lie past the backing file's end.
        let fx = try OverlayFixture(setup, size: size, backingSize: size - max(65536, 2 * cs))
        let image = try fx.open()
        let d = try EngineDriver(image: image, depth: setup.depth, synchronous: synchronous)
        if synchronous {
            #expect(!d.engine.isAsynchronous)
        } else {
            try #require(d.engine.isAsynchronous, "libaio is not in use: this would only test the synchronous fallback")
        }
        var rng = XorShift(UInt64(index) &* 131 &+ (synchronous ? 7 : 0) &+ cs)
        let clusters = size / cs
        let batches = 40
        for batch in 0 ..< batches {
            let before = fx.model
            // A hot region of 1...8 neighbouring clusters, widened by up to half a cluster each side.
            let span = 1 + rng.next(8)
            let c0 = rng.next(clusters - span + 1)
            let lo = c0 * cs >= cs / 2 && rng.chance(50) ? c0 * cs - rng.next(cs / 2) : c0 * cs
            let hi = min(size, (c0 + span) * cs + (rng.chance(50) ? rng.next(cs / 2) : 0))
            // Cut it into disjoint segments; the cut granularity decides the request shapes.
            let grains: [UInt64] = [1, 512, 4096, cs]
            let grain = max(1, min(grains[Int(rng.next(4))], cs))
            let pieces = Int(2 + rng.next(24))
            var cuts = Set<UInt64>()
            for _ in 0 ..< pieces {
                let c = lo + rng.next(hi - lo)
                cuts.insert(min(hi, max(lo, c / grain * grain)))
            }
            let points = ([lo, hi] + cuts).sorted()
            var writes: [(UInt64, Int)] = []
            for (a, b) in zip(points, points.dropFirst()) where b > a && rng.chance(85) {
                writes.append((a, Int(b - a)))
            }
            // Shuffle: which request allocates a cluster and which ones find it allocated varies.
            for i in writes.indices.reversed() where i > 0 {
                writes.swapAt(i, Int(rng.next(UInt64(i + 1))))
            }
            var after = fx.model
            var payloads: [[UInt8]] = []
            for (k, (o, n)) in writes.enumerated() {
                let p = pattern(n, seed: UInt64(batch) << 20 | UInt64(k) << 8 | UInt64(index))
                after.replaceSubrange(Int(o) ..< Int(o) + n, with: p)
                payloads.append(p)
            }
            // Submit writes with reads of the hot region mixed in; nothing completes meanwhile.
            for (k, (o, n)) in writes.enumerated() {
                d.write(o, payloads[k], pieces: 1 + Int(rng.next(3)))
                if rng.chance(35) {
                    let ro = lo + rng.next(hi - lo)
                    let rn = Int(1 + rng.next(min(hi - ro, 3 * cs)))
                    d.read(ro, rn, pieces: 1 + Int(rng.next(2)), check: beforeOrAfter(before, after, at: Int(ro)))
                }
            }
            fx.model = after
            if rng.chance(20) { d.other(.flush) }
            d.complete(usePoll: batch % 2 == 1)
            // Right after the batch, the hot region reads back exactly.
            d.read(lo, Int(hi - lo)) { [model = fx.model] got in
                firstDifference(got, Array(model[Int(lo) ..< Int(hi)])).map { "batch \(batch): hot region differs at disk byte \(Int(lo) + $0)" }
            }
            d.complete(usePoll: false)
            if !d.problems.isEmpty { break }
        }
        #expect(d.problems.isEmpty, "\(setup), synchronous \(synchronous): \(d.problems.prefix(10))")
        #expect(d.completed == d.submitted)
        if !synchronous && !setup.direct {
            #expect(d.hostMapped > 0, "no request was mapped to host extents: libaio never saw data I/O")
        }
        // Whole disk through the engine, many reads in flight.
        d.readAll(size, chunk: Int(max(cs, 65536)), expect: fx.model, usePoll: true)
        #expect(d.problems.isEmpty, "\(setup), synchronous \(synchronous): \(d.problems.prefix(10))")
        d.engine.drain()
        try image.close()
        try fx.verifyOnDisk("\(setup), synchronous \(synchronous)")
    }

    // MARK: - 3. The guest's workload: 256 × 4 KiB sequential writes, 16 in flight

    static let guestSetups: [(OverlaySetup, shift: UInt64)] = [
        (OverlaySetup(cluster: 65536, qemuCreated: true, backingQcow2: true), 0), // as in the integration test
        (OverlaySetup(cluster: 65536, qemuCreated: true, backingQcow2: true), 2048),
        (OverlaySetup(cluster: 65536), 0),
        (OverlaySetup(cluster: 4096), 512),
        (OverlaySetup(cluster: 512, tinyCache: true), 0),
        (OverlaySetup(cluster: 65536, direct: true, backingQcow2: true), 0),
        (OverlaySetup(cluster: 4096, direct: true), 0),
    ]

    static let guestFirst: UInt64 = 1024 * 512
    static let guestBlocks = 256
    static let guestBlock = 4096

    /// Runs the guest's pipeline: submit 16, then one more from each completion,
    /// waking on the eventfd like the device; then reads it back the same way.
    static func guestPipeline(_ d: EngineDriver, _ fx: OverlayFixture, shift: UInt64, usePoll: Bool) {
        var next = 0
        let first = guestFirst + shift
        func submitNext() {
            guard next < guestBlocks else { return }
            let i = next
            next += 1
            let data = pattern(guestBlock, seed: 5000 + UInt64(i))
            let at = Int(first) + i * guestBlock
            fx.model.replaceSubrange(at ..< at + guestBlock, with: data)
            d.write(first + UInt64(i * guestBlock), data) { submitNext() }
        }
        for _ in 0 ..< 16 { submitNext() }
        d.complete(usePoll: usePoll)
        #expect(next == guestBlocks)
        // Read back, 16 in flight.
        var nextRead = 0
        func readNext() {
            guard nextRead < guestBlocks else { return }
            let at = Int(first) + nextRead * guestBlock
            nextRead += 1
            d.read(UInt64(at), guestBlock) { [model = fx.model] got in
                defer { readNext() }
                return firstDifference(got, Array(model[at ..< at + guestBlock])).map { "pipelined read-back differs at disk byte \(at + $0)" }
            }
        }
        for _ in 0 ..< 16 { readNext() }
        d.complete(usePoll: usePoll)
        #expect(nextRead == guestBlocks)
    }

    /// The guest's exact workload over a backing file holding data in that range,
    /// then close() and a fresh open: every block is there.
    @Test(arguments: 0 ..< guestSetups.count, [false, true])
    func guestPipelinedWrites(setup index: Int, synchronous: Bool) throws {
        let (setup, shift) = Self.guestSetups[index]
        let fx = try OverlayFixture(setup, size: 4 << 20)
        let image = try fx.open()
        let d = try EngineDriver(image: image, depth: 64, synchronous: synchronous)
        if synchronous {
            #expect(!d.engine.isAsynchronous)
        } else {
            try #require(d.engine.isAsynchronous, "libaio is not in use")
        }
        Self.guestPipeline(d, fx, shift: shift, usePoll: true)
        #expect(d.problems.isEmpty, "\(setup): \(d.problems.prefix(10))")
        #expect(d.completed == d.submitted)
        if !synchronous && !setup.direct { #expect(d.hostMapped > 0) }
        d.engine.drain()
        try image.close()
        try fx.verifyOnDisk("\(setup) shift \(shift), synchronous \(synchronous)")
    }

    /// Same workload, but the engine and image are only released (no close(), no
    /// flush), as a device torn down by dropping references: `Qcow2Image.deinit`
    /// closes, so the data and the metadata cache still reach the file.
    @Test(arguments: [0, 4], [false, true])
    func guestPipelinedWritesSurviveReleaseWithoutClose(setup index: Int, synchronous: Bool) throws {
        let (setup, shift) = Self.guestSetups[index]
        let fx = try OverlayFixture(setup, size: 4 << 20)
        do {
            let d = try EngineDriver(image: try fx.open(), depth: 64, synchronous: synchronous)
            #expect(d.engine.isAsynchronous == !synchronous)
            Self.guestPipeline(d, fx, shift: shift, usePoll: true)
            #expect(d.problems.isEmpty, "\(setup): \(d.problems.prefix(10))")
        }
        try fx.verifyOnDisk("\(setup) shift \(shift), released without close, synchronous \(synchronous)")
    }
}

// MARK: - 2. Property: random batches of in-flight requests through the engine

@Suite struct AsyncOverlayPropertyTests {
    static let size: UInt64 = 2 << 20

    static let setups: [OverlaySetup] = [
        OverlaySetup(cluster: 4096, depth: 8),
        OverlaySetup(cluster: 65536),
        OverlaySetup(cluster: 4096, version: 2, qemuCreated: true),
        OverlaySetup(cluster: 512, tinyCache: true, depth: 4),
        OverlaySetup(cluster: 4096, direct: true, depth: 16),
    ]

    /// One generated request, in units the body scales to the cluster size.
    struct RawOp: Sendable, CustomStringConvertible {
        var kind: Int      // 0-4 write, 5 write in 3 iovecs, 6-7 read, 8 discard, 9 write-zeroes, 10 flush
        var cluster: Int   // cluster relative to the batch's base (0...7)
        var within: Int    // byte offset inside the cluster (scaled, maybe 4 KiB aligned)
        var length: Int
        var seed: Int
        var description: String { "(\(kind),\(cluster),\(within),\(length),\(seed))" }
    }

    static let opGen = zip(Gen.int(in: 0 ... 10), Gen.int(in: 0 ... 7), Gen.int(in: 0 ... 65535),
                           Gen.int(in: 1 ... 4 * 65536), Gen.int(in: 0 ... 1 << 20))
        .map { RawOp(kind: $0, cluster: $1, within: $2, length: $3, seed: $4) }

    struct Batch: Sendable, CustomStringConvertible {
        var base: Int
        var ops: [RawOp]
        var description: String { "base \(base): \(ops)" }
    }

    static let batchGen = zip(Gen.int(in: 0 ... Int(size) - 1), opGen.array(of: 1 ... 24))
        .map { Batch(base: $0, ops: $1) }

    enum Op: CustomStringConvertible {
        case write(UInt64, Int, pieces: Int, seed: UInt64)
        case read(UInt64, Int)
        case discard(UInt64, UInt64)
        case zeroes(UInt64, UInt64)
        case flush
        var description: String {
            switch self {
            case .write(let o, let n, let p, let s): return "w \(o)+\(n)/\(p) s\(s)"
            case .read(let o, let n): return "r \(o)+\(n)"
            case .discard(let o, let n): return "d \(o)+\(n)"
            case .zeroes(let o, let n): return "z \(o)+\(n)"
            case .flush: return "f"
            }
        }
    }

    /// Scales a generated batch to concrete requests; a mutation overlapping an
    /// earlier one of the same batch becomes a read of its range instead.
    static func concrete(_ b: Batch, cs: UInt64) -> [Op] {
        let size = Self.size
        var taken: [Range<UInt64>] = []
        var out: [Op] = []
        let base = UInt64(b.base) / cs * cs
        for r in b.ops {
            var off = base + UInt64(r.cluster) * cs + UInt64(r.within) % cs
            if r.seed & 1 == 0 { off = off / 4096 * 4096 } // O_DIRECT-friendly
            off = min(off, size - 1)
            var len: UInt64
            switch (r.seed >> 1) % 4 {
            case 0: len = 1 + UInt64(r.length) % cs                         // within a cluster (or spanning two)
            case 1: len = UInt64(r.length) % (4 * cs) + 1                   // up to four clusters
            case 2: len = cs * (1 + UInt64(r.length) % 4)                   // whole-cluster multiples
            default: len = UInt64(4096 * (1 + r.length % 16))               // 4 KiB multiples
            }
            len = min(len, size - off)
            let range = off ..< off + len
            let mutates = [0, 1, 2, 3, 4, 5, 8, 9].contains(r.kind)
            if mutates && taken.contains(where: { $0.overlaps(range) }) {
                out.append(.read(off, Int(len)))
                continue
            }
            switch r.kind {
            case 0 ... 4: out.append(.write(off, Int(len), pieces: 1, seed: UInt64(r.seed)))
            case 5: out.append(.write(off, Int(len), pieces: 3, seed: UInt64(r.seed)))
            case 6, 7: out.append(.read(off, Int(len)))
            case 8: out.append(.discard(off, len))
            case 9: out.append(.zeroes(off, len))
            default: out.append(.flush)
            }
            if mutates { taken.append(range) }
        }
        return out
    }

    @Test(arguments: 0 ..< setups.count, [false, true])
    func engineMatchesModel(setup index: Int, synchronous: Bool) async throws {
        let setup = Self.setups[index]
        let cs = setup.cluster
        await propertyCheck(count: 10, input: Self.batchGen.array(of: 1 ... 8)) { batches in
            let fx = try OverlayFixture(setup, size: Self.size, backingSize: Self.size - 65536)
            let plan = batches.map { Self.concrete($0, cs: cs) }
            let context = "\(setup), synchronous \(synchronous), batches \(plan)"
            do {
                let image = try fx.open()
                let d = try EngineDriver(image: image, depth: setup.depth, synchronous: synchronous)
                if synchronous {
                    #expect(!d.engine.isAsynchronous)
                } else {
                    try #require(d.engine.isAsynchronous, "libaio is not in use")
                }
                for (bi, ops) in plan.enumerated() {
                    let before = fx.model
                    var after = fx.model
                    for op in ops {
                        switch op {
                        case .write(let o, let n, _, let s):
                            after.replaceSubrange(Int(o) ..< Int(o) + n, with: pattern(n, seed: s))
                        case .discard(let o, let n), .zeroes(let o, let n):
                            after.replaceSubrange(Int(o) ..< Int(o + n), with: repeatElement(0, count: Int(n)))
                        case .read, .flush: break
                        }
                    }
                    for op in ops {
                        switch op {
                        case .write(let o, let n, let p, let s): d.write(o, pattern(n, seed: s), pieces: p)
                        case .read(let o, let n): d.read(o, n, pieces: 1 + n % 2, check: beforeOrAfter(before, after, at: Int(o)))
                        case .discard(let o, let n): d.other(.discard(offset: o, length: n))
                        case .zeroes(let o, let n): d.other(.writeZeroes(offset: o, length: n))
                        case .flush: d.other(.flush)
                        }
                    }
                    fx.model = after
                    d.complete(usePoll: bi % 2 == 0)
                }
                d.readAll(Self.size, chunk: 65536, expect: fx.model, usePoll: true)
                #expect(d.problems.isEmpty, "\(context): \(d.problems.prefix(8))")
                #expect(d.completed == d.submitted)
                d.engine.drain()
                try image.close()
            }
            try fx.verifyOnDisk(context)
        }
    }
}
