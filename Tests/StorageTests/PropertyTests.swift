import Foundation
import PropertyBased
import Testing
@testable import Storage

/// Random op sequences applied to a qcow2 image and to an in-memory model must
/// read back the same, and `qemu-img check` must stay clean.
@Suite struct PropertyTests {
    static let size: UInt64 = 2 << 20

    struct Config: Sendable, CustomStringConvertible {
        let cluster: UInt64
        let version: UInt32
        let backing: Bool
        var tinyCache = false
        var description: String {
            "v\(version) \(cluster)-byte clusters\(backing ? " over a backing file" : "")\(tinyCache ? ", tiny metadata caches" : "")"
        }
    }

    static let configs = [
        Config(cluster: 4096, version: 3, backing: false),
        Config(cluster: 65536, version: 3, backing: true),
        Config(cluster: 4096, version: 2, backing: true),
        Config(cluster: 512, version: 3, backing: true, tinyCache: true),
    ]

    static let opGen = zip(Gen.int(in: 0 ... 9), Gen.int(in: 0 ... Int(size) - 1), Gen.int(in: 1 ... 20000), Gen.int(in: 0 ... 1 << 20))
        .map { kind, offset, length, seed -> DiskOp in
            let o = UInt64(offset)
            let l = min(UInt64(length), size - o)
            switch kind {
            case 0 ... 4: return .write(offset: o, length: Int(l), seed: UInt64(seed))
            case 5, 6: return .discard(offset: o, length: l)
            case 7, 8: return .zero(offset: o, length: l * UInt64(1 + seed % 8) > size - o ? l : l * UInt64(1 + seed % 8))
            default: return .flush
            }
        }

    @Test(arguments: 0 ..< configs.count)
    func imageMatchesModel(config index: Int) async throws {
        let config = Self.configs[index]
        await propertyCheck(count: 12, input: Self.opGen.array(of: 1 ... 40)) { ops in
            let dir = TempDir()
            let path = dir.file("p.qcow2")
            var model = [UInt8](repeating: 0, count: Int(Self.size))
            var options = Qcow2Image.CreateOptions()
            options.clusterSize = config.cluster
            options.version = config.version
            if config.backing {
                let base = dir.file("base.raw")
                try RawImage.create(path: base, size: Self.size)
                let b = try DiskImageOpener.open(path: base, format: .raw)
                model = pattern(Int(Self.size), seed: 99)
                try b.write(model, at: 0)
                try b.close()
                options.backingFile = "base.raw"
                options.backingFormat = .raw
            }
            try Qcow2Image.create(path: path, virtualSize: Self.size, options: options)
            do {
                let img: DiskImage = config.tinyCache
                    ? try Qcow2Image(file: ImageFile.open(path, readOnly: false), chain: BackingChain(top: path), cacheBytes: 1024)
                    : try DiskImageOpener.open(path: path, format: .qcow2)
                for op in ops {
                    try op.apply(to: img)
                    switch op {
                    case .write(let o, let l, let s): model.replaceSubrange(Int(o) ..< Int(o) + l, with: pattern(l, seed: s))
                    case .discard(let o, let l), .zero(let o, let l):
                        model.replaceSubrange(Int(o) ..< Int(o + l), with: repeatElement(0, count: Int(l)))
                    case .flush: break
                    }
                }
                #expect(try img.read(count: Int(Self.size), at: 0) == model, "\(config): read-back differs after \(ops)")
                try img.close()
            }
            // Reopened from disk: same bytes, and a clean image for qemu-img.
            let again = try DiskImageOpener.open(path: path, format: .qcow2, readOnly: true)
            #expect(try again.read(count: Int(Self.size), at: 0) == model, "\(config): differs after reopen, \(ops)")
            try again.close()
            let check = try qemuImg("check", path)
            #expect(check.status == 0, "\(config): qemu-img check after \(ops): \(check.stdout)")
        }
    }
}
