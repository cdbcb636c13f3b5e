import Foundation
import Migration
import Posix
@testable import VMState

// The migration stream as a destination reads it: frame headers (kind, flags, the
// per-kind payload limit), then each payload through its decoder — the start
// message's magic and version, the config (JSON, then the machine config's own
// validation), memory runs (alignment, encoding, length, and the run against a
// 64 MiB machine's memory map), disk runs (encoding, length, placement on a
// 64 MiB disk), disk plans and disk lists, the machine state (state.bin framing, binary
// payload, validation) and the text of abandon/refused — until the input ends.

/// The input as a byte stream; reading past its end throws as a cut connection does.
private final class InputStream: ByteStream {
    let bytes: [UInt8]
    var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    func write(_ bytes: UnsafeRawBufferPointer) throws {}
    func flush() throws {}
    func close() {}
    func read(into buffer: UnsafeMutableRawBufferPointer) throws {
        guard buffer.count <= bytes.count - offset else { throw ByteStreamError.endOfStream }
        bytes.withUnsafeBytes { src in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[offset..<(offset + buffer.count)]))
        }
        offset += buffer.count
    }
}

/// RAM of a 64 MiB machine: one range from 0.
private let ramEnd: UInt64 = 64 << 20

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMigration(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let stream = InputStream(Array(UnsafeBufferPointer(start: data, count: size)))
    for _ in 0..<64 {
        guard let header = try? MigrationFrame.readHeader(from: stream),
              let payload = try? MigrationFrame.readPayload(header, from: stream) else { return 0 }
        switch header.kind {
        case .start:
            _ = try? MigrationVersion.check(startPayload: payload)
        case .config:
            _ = try? MigrationConfig.decode(payload)
        case .memory:
            guard payload.count >= MemoryRun.headerSize,
                  let run = try? MemoryRun.parse(Array(payload.prefix(MemoryRun.headerSize)), frameLength: header.length)
            else { continue }
            // The receiver's placement rule: the whole run inside RAM, without overflow.
            let (end, overflow) = run.guestAddress.addingReportingOverflow(run.byteCount)
            _ = !overflow && end <= ramEnd
        case .state:
            _ = try? MachineState.decodeStateFile(payload, name: "state")
        case .disk:
            guard payload.count >= DiskRun.headerSize,
                  let run = try? DiskRun.parse(Array(payload.prefix(DiskRun.headerSize)), frameLength: header.length)
            else { continue }
            // The receiver's placement rule, against a 64 MiB disk of 64 KiB clusters.
            _ = try? run.check(virtualSize: 64 << 20, clusterSize: 65536)
        case .diskPlan:
            if let plan = try? MigrationDiskPlan.parse(payload, disks: payload.count) {
                _ = try? MigrationDiskList.decode(payload, plan: plan)
            }
        case .disks:
            _ = try? MigrationDiskList.decode(payload, plan: MigrationDiskPlan(copied: [true]))
        case .abandon, .refused:
            _ = MigrationFrame.decodeText(payload)
        case .iterationEnd, .commit, .accepted, .ready, .running:
            break
        }
    }
    return 0
}

// libFuzzer's own main is not linked (SwiftPM points `main` at this file's top-level code).
@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(_ argc: UnsafeMutablePointer<CInt>,
                       _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                       _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
var argc = CommandLine.argc, argv = CommandLine.unsafeArgv
exit(runDriver(&argc, &argv, { fuzzMigration($0, $1) }))
