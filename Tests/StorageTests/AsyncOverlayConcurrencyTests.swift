import Foundation
import PropertyBased
import Testing
@testable import Storage

// Many requests in flight through the REAL async engine (its I/O threads) against a qcow2
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
            try #require(d.engine.isAsynchronous, "the asynchronous engine is not in use: this would only test the synchronous fallback")
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
            for (k, (o, _)) in writes.enumerated() {
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
            #expect(d.hostMapped > 0, "no request was mapped to host extents: the I/O threads never saw data I/O")
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
            try #require(d.engine.isAsynchronous, "the asynchronous engine is not in use")
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
                    try #require(d.engine.isAsynchronous, "the asynchronous engine is not in use")
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
