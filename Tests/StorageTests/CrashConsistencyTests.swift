import Foundation
import Testing
@testable import Storage

/// Finds the `skiff-storage-bench` executable built next to the test bundle.
func benchExecutable() throws -> String {
    var candidates: [String] = []
    if let env = ProcessInfo.processInfo.environment["SKIFF_STORAGE_BENCH"] { candidates.append(env) }
    let argv0 = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    candidates.append(argv0.appendingPathComponent("skiff-storage-bench").path)
    candidates.append(argv0.deletingLastPathComponent().appendingPathComponent("skiff-storage-bench").path)
    for c in candidates where FileManager.default.isExecutableFile(atPath: c) { return c }
    Issue.record("skiff-storage-bench not found (looked in \(candidates)); build it with swift build")
    throw StorageError(.invalidArgument, "skiff-storage-bench missing")
}

/// A child process writing to a qcow2 image is SIGKILLed at a random moment; the
/// image must then have no corruption (leaks allowed) and every write that a
/// completed flush covered must read back.
@Suite struct CrashConsistencyTests {
    static let size: UInt64 = 8 << 20

    static func makeOps(seed: UInt64, cluster: UInt64) -> [DiskOp] {
        var rng = seed | 1
        func next(_ n: UInt64) -> UInt64 {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
            return rng % n
        }
        var ops: [DiskOp] = []
        for i in 0 ..< 1500 {
            if i % 6 == 5 { ops.append(.flush); continue }
            let offset = next(size - 1)
            let length = min(1 + next(3 * cluster), size - offset)
            switch next(10) {
            case 0: ops.append(.discard(offset: offset, length: length))
            case 1: ops.append(.zero(offset: offset, length: length))
            default: ops.append(.write(offset: offset, length: Int(length), seed: seed &+ UInt64(i)))
            }
        }
        return ops
    }

    static func opsText(_ ops: [DiskOp]) -> String {
        ops.map { op -> String in
            switch op {
            case .write(let o, let l, let s): return "w \(o) \(l) \(s)"
            case .discard(let o, let l): return "d \(o) \(l)"
            case .zero(let o, let l): return "z \(o) \(l)"
            case .flush: return "f"
            }
        }.joined(separator: "\n") + "\n"
    }

    @Test(arguments: [UInt64(4096), 65536])
    func sigkillDuringWrites(cluster: UInt64) throws {
        let writer = try benchExecutable()
        _ = try qemuImg("--version")
        let runs = 12 // per cluster size: 24 kills in all
        var leaksSeen = 0
        var interrupted = 0
        for run in 0 ..< runs {
            let dir = TempDir()
            let img = dir.file("crash.qcow2"), opsFile = dir.file("ops.txt")
            let seed = UInt64(run) &* 7919 &+ cluster
            let ops = Self.makeOps(seed: seed, cluster: cluster)
            try Self.opsText(ops).write(toFile: opsFile, atomically: true, encoding: .utf8)
            var o = Qcow2Image.CreateOptions()
            o.clusterSize = cluster
            try Qcow2Image.create(path: img, virtualSize: Self.size, options: o)

            let p = Process()
            p.executableURL = URL(fileURLWithPath: writer)
            p.arguments = ["crash-writer", img, opsFile]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            // Wait until the writer is running (process start-up varies), then kill it 5–95 ms later.
            var output = out.fileHandleForReading.availableData
            usleep(UInt32(5_000 + (seed % 7) * 15_000))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            output += out.fileHandleForReading.readDataToEndOfFile()
            let lines = String(decoding: output, as: UTF8.self).split(separator: "\n")
            if !lines.contains("DONE") { interrupted += 1 }
            var started = -1, flushed = -1
            for l in lines {
                if l.hasPrefix("S "), let i = Int(l.dropFirst(2)) { started = i }
                if l.hasPrefix("F "), let i = Int(l.dropFirst(2)) { flushed = i }
            }

            let check = try qemuImg("check", img)
            #expect(check.status == 0 || check.status == 3, "run \(run): corruption after SIGKILL at op \(started): \(check.stdout)")
            if check.status == 3 { leaksSeen += 1 }

            // Expected contents: ops up to the last completed flush are durable; bytes touched
            // by ops after it (started, maybe half done) may hold either value.
            var expected = [UInt8](repeating: 0, count: Int(Self.size))
            var unknown = [Bool](repeating: false, count: Int(Self.size))
            for (i, op) in ops.enumerated() where i <= max(started, flushed) {
                let range: Range<Int>
                switch op {
                case .write(let o, let l, _): range = Int(o) ..< Int(o) + l
                case .discard(let o, let l), .zero(let o, let l): range = Int(o) ..< Int(o + l)
                case .flush: continue
                }
                if i <= flushed {
                    if case .write(_, let l, let s) = op {
                        expected.replaceSubrange(range, with: pattern(l, seed: s))
                    } else {
                        expected.replaceSubrange(range, with: repeatElement(0, count: range.count))
                    }
                } else {
                    unknown.replaceSubrange(range, with: repeatElement(true, count: range.count))
                }
            }
            let image = try DiskImageOpener.open(path: img, format: .qcow2, readOnly: true)
            let actual = try image.read(count: Int(Self.size), at: 0)
            var bad = -1
            actual.withUnsafeBufferPointer { a in
                expected.withUnsafeBufferPointer { e in
                    unknown.withUnsafeBufferPointer { u in
                        for i in 0 ..< a.count where a[i] != e[i] && !u[i] { bad = i; break }
                    }
                }
            }
            #expect(bad < 0, "run \(run): byte \(bad) lost after flush \(flushed) (killed at op \(started))")
            #expect(started >= 0, "run \(run): the writer never started")
        }
        #expect(interrupted >= runs / 2, "only \(interrupted) of \(runs) runs were killed mid-way")
        _ = leaksSeen
    }
}
