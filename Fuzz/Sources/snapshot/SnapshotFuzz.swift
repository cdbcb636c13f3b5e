import Foundation
@testable import VMState

// The snapshot decoder: manifest.json and state.bin, as `SnapshotReader` reads them.
// Input: [flags][le32 manifest length][manifest.json][state]. With flag bit 0 the
// state bytes are a payload that is framed here (magic, version 2, length, CRC-64),
// so the fuzzer reaches the binary decoder and validation instead of stopping at
// the checksum;
// without it they are the raw state.bin, to fuzz the framing itself.
private let directory: URL = {
    let url = URL(fileURLWithPath: "/dev/shm/skiff-fuzz-snapshot-\(getpid())")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    // The golden snapshot's memory file size: the manifest's memory map must match it.
    FileManager.default.createFile(atPath: url.appendingPathComponent("memory").path, contents: Data(count: 8192))
    atexit { try? FileManager.default.removeItem(atPath: "/dev/shm/skiff-fuzz-snapshot-\(getpid())") }
    return url
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSnapshot(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    guard input.count >= 5 else { return 0 }
    let framed = input[0] & 1 != 0
    let declared = Int(input[1]) | Int(input[2]) << 8 | Int(input[3]) << 16 | Int(input[4]) << 24
    let manifestLength = min(declared, input.count - 5)
    let manifestBytes = Array(input[5..<(5 + manifestLength)])
    let rest = Array(input[(5 + manifestLength)...])
    let stateBytes = framed ? StateFile.frame(payload: rest) : rest

    // The pieces directly: fast, and past the manifest's checksums of state.bin.
    var manifest: SnapshotManifest?
    if let m = try? JSONDecoder().decode(SnapshotManifest.self, from: Data(manifestBytes)), (try? m.validate()) != nil {
        manifest = m
    }
    let state = try? StateFile.decode(stateBytes, name: "state.bin")
    if let manifest, let state {
        _ = try? SnapshotReader.checkConsistency(state: state, machine: manifest.machine)
    }
    // And the whole reader over real files, for what it adds to the pieces: reading
    // the files, the state's size and CRC-64 against the manifest, the memory file.
    // Only when both pieces decoded: otherwise the reader stops at the same decoder
    // on the same bytes, and repeating that (JSON, CRC-64 of the state) cost a third
    // of every input.
    guard manifest != nil, state != nil else { return 0 }
    do {
        try Data(manifestBytes).write(to: directory.appendingPathComponent("manifest.json"))
        try Data(stateBytes).write(to: directory.appendingPathComponent("state.bin"))
        _ = try? SnapshotReader(directory: directory).read(verifyMemoryChecksum: input[0] & 2 != 0)
    } catch {
        fatalError("cannot write the fuzz snapshot files: \(error)")
    }
    return 0
}

// libFuzzer's own main is not linked (SwiftPM points `main` at this file's top-level code).
@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(_ argc: UnsafeMutablePointer<CInt>,
                       _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                       _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
var argc = CommandLine.argc, argv = CommandLine.unsafeArgv
exit(runDriver(&argc, &argv, { fuzzSnapshot($0, $1) }))
