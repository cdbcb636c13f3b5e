import Foundation
import Testing
@testable import Storage

/// A fresh temporary directory per test, removed when the value is released.
final class TempDir {
    let path: String
    init() {
        let base = FileManager.default.temporaryDirectory.path
        path = base + "/skiff-storage-\(getpid())-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Output and status of a finished process.
struct ProcessResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs a program and waits for it.
@discardableResult
func run(_ tool: String, _ args: [String]) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read stderr on another thread: a tool that fills one pipe while we block on
    // the other would otherwise deadlock (qemu-img check prints one line per leak).
    final class Box: @unchecked Sendable { var data = Data() }  // Sound because: written before `group.leave()`, read after `group.wait()`.
    let errBox = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errBox.data = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let e = errBox.data
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// qemu-img must exist: interop tests fail loudly without it (CI installs qemu-utils).
@discardableResult
func qemuImg(_ args: String...) throws -> ProcessResult {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-img") else {
        Issue.record("qemu-img is missing: install qemu-utils")
        throw StorageError(.invalidArgument, "qemu-img missing")
    }
    return try run("/usr/bin/qemu-img", args)
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var out = [UInt8](repeating: 0, count: count)
    for i in 0 ..< count {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17
        out[i] = UInt8(truncatingIfNeeded: x)
    }
    return out
}

extension DiskImage {
    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }
    func read(count: Int, at offset: UInt64) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xAA, count: count)
        try out.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return out
    }
}

/// Expects `body` to throw a StorageError of `kind`; returns it.
@discardableResult
func expectStorageError(_ kind: StorageError.Kind, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> StorageError? {
    do {
        try body()
        Issue.record("expected a \(kind) error, got success", sourceLocation: sourceLocation)
    } catch let e as StorageError {
        #expect(e.kind == kind, "got \(e)", sourceLocation: sourceLocation)
        return e
    } catch {
        Issue.record("expected StorageError.\(kind), got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
