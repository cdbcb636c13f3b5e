#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Storage

/// The child of the crash-consistency test: applies the operations listed in a
/// text file to an image, announcing each on stdout *before* starting it
/// ("S <index>") and each completed flush after it returns ("F <index>"), so the
/// parent knows exactly what may be on disk when it sends SIGKILL.
///
/// File lines: `w <offset> <length> <seed>`, `d <offset> <length>`, `z <offset> <length>`, `f`.
enum CrashWriter {
    static func run(image: String, opsFile: String) throws {
        guard let text = try? String(contentsOfFile: opsFile, encoding: .utf8) else {
            throw StorageError(.invalidArgument, "cannot read \(opsFile)")
        }
        let disk = try DiskImageOpener.open(path: image, format: .qcow2)
        for (i, line) in text.split(separator: "\n").enumerated() {
            let f = line.split(separator: " ")
            say("S \(i)")
            switch f.first {
            case "w":
                let data = pattern(Int(f[2])!, seed: UInt64(f[3])!)
                try data.withUnsafeBytes { try disk.write($0, at: UInt64(f[1])!) }
            case "d": try disk.discard(at: UInt64(f[1])!, length: UInt64(f[2])!)
            case "z": try disk.writeZeroes(at: UInt64(f[1])!, length: UInt64(f[2])!)
            case "f":
                try disk.flush()
                say("F \(i)")
            default: break
            }
        }
        say("DONE")
    }

    /// One unbuffered write(2) per line, so nothing is lost in a stdio buffer at SIGKILL.
    static func say(_ s: String) {
        let line = Array((s + "\n").utf8)
        _ = line.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
    }

    /// Same generator as the tests' `pattern`: deterministic bytes from a seed.
    static func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
        var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out = [UInt8](repeating: 0, count: count)
        for i in 0 ..< count {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            out[i] = UInt8(truncatingIfNeeded: x)
        }
        return out
    }
}
