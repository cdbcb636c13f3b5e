import Foundation
import Testing
@testable import Storage

/// One operation applied to both the image under test and a raw reference.
enum DiskOp: CustomStringConvertible, Sendable {
    case write(offset: UInt64, length: Int, seed: UInt64)
    case discard(offset: UInt64, length: UInt64)
    case zero(offset: UInt64, length: UInt64)
    case flush

    var description: String {
        switch self {
        case .write(let o, let l, let s): return "write(\(o), \(l), seed \(s))"
        case .discard(let o, let l): return "discard(\(o), \(l))"
        case .zero(let o, let l): return "zero(\(o), \(l))"
        case .flush: return "flush"
        }
    }

    func apply(to image: DiskImage) throws {
        switch self {
        case .write(let o, let l, let s): try image.write(pattern(l, seed: s), at: o)
        case .discard(let o, let l): try image.discard(at: o, length: l)
        case .zero(let o, let l): try image.writeZeroes(at: o, length: l)
        case .flush: try image.flush()
        }
    }
}

/// A fixed mix of aligned, unaligned, cross-cluster writes, discards and zeroes.
func standardOps(size: UInt64, cluster: UInt64) -> [DiskOp] {
    [
        .write(offset: 0, length: 4096, seed: 1),
        .write(offset: cluster - 100, length: 300, seed: 2),                 // crosses a cluster boundary
        .write(offset: 3 * cluster + 17, length: Int(2 * cluster + 5), seed: 3), // partial, full, partial
        .write(offset: size - 512, length: 512, seed: 4),                       // last sector
        .write(offset: size / 2, length: 1 << 20, seed: 5),                     // 1 MiB run
        .flush,
        .discard(offset: size / 2 + cluster, length: 2 * cluster),              // whole clusters
        .zero(offset: 3 * cluster + 100, length: 50),                           // inside a cluster
        .write(offset: size / 2 + cluster + 10, length: 20, seed: 6),          // into a discarded cluster
        .zero(offset: size / 4, length: 4 * cluster),                           // unallocated: no-op
        .write(offset: 1, length: 1, seed: 7),
        .flush,
    ]
}

/// Applies ops to a qcow2 image and a raw reference, then checks with qemu-img.
func applyAndVerify(_ imagePath: String, reference refPath: String, ops: [DiskOp], sourceLocation: SourceLocation = #_sourceLocation) throws {
    do {
        let image = try DiskImageOpener.open(path: imagePath, format: .qcow2)
        let ref = try DiskImageOpener.open(path: refPath, format: .raw)
        for op in ops {
            try op.apply(to: image)
            try op.apply(to: ref)
        }
        // Read back through Skiff before closing.
        var pos: UInt64 = 0
        while pos < image.virtualSize {
            let n = Int(min(1 << 20, image.virtualSize - pos))
            let a = try image.read(count: n, at: pos), b = try ref.read(count: n, at: pos)
            #expect(a == b, "read-back differs in [\(pos), +\(n))", sourceLocation: sourceLocation)
            if a != b { break }
            pos += UInt64(n)
        }
        try image.close()
        try ref.close()
    }
    let own = try Qcow2Image(path: imagePath, readOnly: true).check()
    #expect(own.exitCode == 0, "skiff check: \(own.formatted)", sourceLocation: sourceLocation)
    let check = try qemuImg("check", imagePath)
    #expect(check.status == 0, "qemu-img check: \(check.stdout) \(check.stderr)", sourceLocation: sourceLocation)
    #expect(check.stdout.contains("No errors were found"), "\(check.stdout)", sourceLocation: sourceLocation)
    let cmp = try qemuImg("compare", "-f", "qcow2", "-F", "raw", imagePath, refPath)
    #expect(cmp.status == 0, "qemu-img compare: \(cmp.stdout) \(cmp.stderr)", sourceLocation: sourceLocation)
}

@Suite struct Qcow2InteropTests {
    static let layouts: [(cluster: UInt64, compat: String)] = [
        (4096, "1.1"), (65536, "1.1"), (2 << 20, "1.1"), (65536, "0.10"), (512, "1.1"),
    ]

    @Test(arguments: 0 ..< layouts.count)
    func qemuCreatedImageWrittenBySkiff(layout: Int) throws {
        let (cluster, compat) = Self.layouts[layout]
        let dir = TempDir()
        let img = dir.file("a.qcow2"), ref = dir.file("ref.raw")
        let size: UInt64 = 32 << 20
        let r = try qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=\(cluster),compat=\(compat)", img, "\(size)")
        #expect(r.status == 0, "\(r.stderr)")
        try RawImage.create(path: ref, size: size)
        try applyAndVerify(img, reference: ref, ops: standardOps(size: size, cluster: cluster))
    }

    @Test(arguments: [0, 1, 3, 4, 5, 6])
    func refcountWidths(order: Int) throws {
        let dir = TempDir()
        let img = dir.file("a.qcow2"), ref = dir.file("ref.raw")
        let size: UInt64 = 8 << 20
        let r = try qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096,refcount_bits=\(1 << order)", img, "\(size)")
        #expect(r.status == 0, "\(r.stderr)")
        try RawImage.create(path: ref, size: size)
        try applyAndVerify(img, reference: ref, ops: standardOps(size: size, cluster: 4096))
    }

    /// 512-byte clusters with 64-bit refcounts: one refcount block covers 64 clusters, so
    /// writing a few MiB needs many new blocks and several refcount-table moves.
    @Test func refcountTableGrowth() throws {
        let dir = TempDir()
        let img = dir.file("a.qcow2"), ref = dir.file("ref.raw")
        let size: UInt64 = 8 << 20
        try Qcow2Image.create(path: img, virtualSize: size, options: { var o = Qcow2Image.CreateOptions(); o.clusterSize = 512; o.refcountOrder = 6; return o }())
        try RawImage.create(path: ref, size: size)
        let before = try run("/usr/bin/qemu-img", ["info", "--output=json", img]).stdout
        var ops: [DiskOp] = []
        for i in 0 ..< 48 { ops.append(.write(offset: UInt64(i) * 131072 + 7, length: 65536, seed: UInt64(i))) }
        ops.append(.flush)
        try applyAndVerify(img, reference: ref, ops: ops)
        let after = try Qcow2Image(path: img, readOnly: true)
        #expect(after.header.refcountTableClusters > 1, "refcount table did not grow")
        _ = before
    }

    @Test func qemuWritesSkiffReads() throws {
        let dir = TempDir()
        let img = dir.file("a.qcow2")
        try Qcow2Image.create(path: img, virtualSize: 16 << 20)
        let io = try run("/usr/bin/qemu-io", ["-f", "qcow2", "-c", "write -P 0xab 65000 200000", "-c", "write -z 131072 65536", img])
        #expect(io.status == 0, "\(io.stderr)")
        let image = try DiskImageOpener.open(path: img, readOnly: true)
        let data = try image.read(count: 300000, at: 0)
        for i in 0 ..< 300000 {
            let expected: UInt8 = (i >= 65000 && i < 265000 && !(i >= 131072 && i < 196608)) ? 0xab : 0
            if data[i] != expected { Issue.record("byte \(i) is \(data[i]), expected \(expected)"); break }
        }
    }

    @Test(arguments: [UInt64(65536), 4096])
    func skiffCreatedImagePassesQemuCheck(cluster: UInt64) throws {
        let dir = TempDir()
        let img = dir.file("new.qcow2")
        var o = Qcow2Image.CreateOptions()
        o.clusterSize = cluster
        try Qcow2Image.create(path: img, virtualSize: 3 << 30, options: o)
        let check = try qemuImg("check", img)
        #expect(check.status == 0 && check.stdout.contains("No errors"), "\(check.stdout)\(check.stderr)")
        let info = try qemuImg("info", "--output=json", img)
        let json = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any]
        #expect(json?["virtual-size"] as? Int == 3 << 30)
        #expect(json?["cluster-size"] as? Int == Int(cluster))
        #expect(json?["format"] as? String == "qcow2")
    }

    @Test func overlayOnQcow2BaseCopiesUp() throws {
        let dir = TempDir()
        let base = dir.file("base.qcow2"), overlay = dir.file("overlay.qcow2"), ref = dir.file("ref.raw")
        let size: UInt64 = 16 << 20
        #expect(try qemuImg("create", "-q", "-f", "qcow2", base, "\(size)").status == 0)
        let io = try run("/usr/bin/qemu-io", ["-f", "qcow2", "-c", "write -P 0x5a 0 8M", "-c", "write -P 0x33 12M 1M", base])
        #expect(io.status == 0, "\(io.stderr)")
        #expect(try qemuImg("convert", "-O", "raw", base, ref).status == 0)
        // Relative backing name, resolved against the overlay's directory.
        #expect(try qemuImg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", overlay).status == 0)
        let baseBefore = try Data(contentsOf: URL(fileURLWithPath: base))
        try applyAndVerify(overlay, reference: ref, ops: standardOps(size: size, cluster: 65536))
        #expect(try Data(contentsOf: URL(fileURLWithPath: base)) == baseBefore, "base image changed")
        let info = try qemuImg("info", "--backing-chain", overlay)
        #expect(info.stdout.contains("backing file: base.qcow2"))
    }

    @Test func skiffOverlayOnRawBase() throws {
        let dir = TempDir()
        let base = dir.file("base.raw"), overlay = dir.file("overlay.qcow2"), ref = dir.file("ref.raw")
        let size: UInt64 = 8 << 20
        try RawImage.create(path: base, size: size)
        try RawImage.create(path: ref, size: size)
        do {
            let b = try DiskImageOpener.open(path: base, format: .raw)
            let r = try DiskImageOpener.open(path: ref, format: .raw)
            for op in [DiskOp.write(offset: 0, length: 3 << 20, seed: 9), .write(offset: 5 << 20, length: 100000, seed: 10)] {
                try op.apply(to: b); try op.apply(to: r)
            }
        }
        var o = Qcow2Image.CreateOptions()
        o.backingFile = base
        try Qcow2Image.create(path: overlay, options: o)
        let info = try qemuImg("info", "--output=json", overlay)
        let json = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any]
        #expect(json?["virtual-size"] as? Int == Int(size))
        #expect(json?["backing-filename"] as? String == base)
        #expect(json?["backing-filename-format"] as? String == "raw")
        try applyAndVerify(overlay, reference: ref, ops: standardOps(size: size, cluster: 65536))
    }

    @Test func threeLevelChain() throws {
        let dir = TempDir()
        let size: UInt64 = 4 << 20
        let ref = dir.file("ref.raw")
        try RawImage.create(path: ref, size: size)
        try Qcow2Image.create(path: dir.file("l0.qcow2"), virtualSize: size)
        let r = try DiskImageOpener.open(path: ref, format: .raw)
        for level in 0 ..< 3 {
            let name = dir.file("l\(level).qcow2")
            if level > 0 {
                var o = Qcow2Image.CreateOptions()
                o.backingFile = "l\(level - 1).qcow2"
                try Qcow2Image.create(path: name, options: o)
            }
            let img = try DiskImageOpener.open(path: name)
            let op = DiskOp.write(offset: UInt64(level) * 1_000_000 + 333, length: 1_500_000, seed: UInt64(level))
            try op.apply(to: img); try op.apply(to: r)
            try img.close()
        }
        try r.close()
        let top = try Qcow2Image(path: dir.file("l2.qcow2"), readOnly: true)
        #expect(top.backingChain.count == 2)
        #expect(try top.read(count: Int(size), at: 0) == (try RawImage(path: ref, readOnly: true).read(count: Int(size), at: 0)))
        let cmp = try qemuImg("compare", "-F", "raw", dir.file("l2.qcow2"), ref)
        #expect(cmp.status == 0, "\(cmp.stdout)")
    }

    @Test func compressedClustersReadAndCopyOnWrite() throws {
        let dir = TempDir()
        let raw = dir.file("src.raw"), img = dir.file("c.qcow2"), ref = dir.file("ref.raw")
        let size: UInt64 = 4 << 20
        try RawImage.create(path: raw, size: size)
        do {
            let r = try DiskImageOpener.open(path: raw, format: .raw)
            // Compressible text-like data and incompressible noise.
            let text = Array(String(repeating: "Skiff compressed cluster test. ", count: 40000).utf8.prefix(1 << 20))
            try r.write(text, at: 0)
            try r.write(pattern(1 << 20, seed: 42), at: 2 << 20)
        }
        #expect(try qemuImg("convert", "-c", "-O", "qcow2", raw, img).status == 0)
        let check = try qemuImg("check", img)
        #expect(!check.stdout.contains(" 0.00% compressed"), "no compressed clusters: \(check.stdout)")
        do {
            let q = try DiskImageOpener.open(path: img, readOnly: true)
            let r = try DiskImageOpener.open(path: raw, format: .raw, readOnly: true)
            #expect(try q.read(count: Int(size), at: 0) == r.read(count: Int(size), at: 0))
        }
        _ = try run("/bin/cp", [raw, ref])
        try applyAndVerify(img, reference: ref, ops: standardOps(size: size, cluster: 65536))
    }

    /// Tiny metadata caches (2 L2 tables, 4 refcount blocks) force evictions of dirty
    /// tables and blocks in the middle of allocations; the result must still be exact.
    @Test func metadataCacheEviction() throws {
        let dir = TempDir()
        let img = dir.file("e.qcow2"), ref = dir.file("ref.raw")
        let size: UInt64 = 8 << 20
        var o = Qcow2Image.CreateOptions()
        o.clusterSize = 512
        try Qcow2Image.create(path: img, virtualSize: size, options: o)
        try RawImage.create(path: ref, size: size)
        do {
            let file = try ImageFile.open(img, readOnly: false)
            let image = try Qcow2Image(file: file, chain: BackingChain(top: img), cacheBytes: 1024)
            let r = try DiskImageOpener.open(path: ref, format: .raw)
            var ops = standardOps(size: size, cluster: 512)
            for i in 0 ..< 60 { ops.append(.write(offset: UInt64(i) * 137_000 % (size - 70000), length: 3000 + i * 1000, seed: UInt64(100 + i))) }
            ops.append(.discard(offset: 1 << 20, length: 1 << 20))
            ops.append(.flush)
            for op in ops { try op.apply(to: image); try op.apply(to: r) }
            #expect(try image.read(count: Int(size), at: 0) == r.read(count: Int(size), at: 0))
            try image.close()
        }
        let check = try qemuImg("check", img)
        #expect(check.status == 0, "\(check.stdout)")
        #expect(try qemuImg("compare", "-f", "qcow2", "-F", "raw", img, ref).status == 0)
    }
}
