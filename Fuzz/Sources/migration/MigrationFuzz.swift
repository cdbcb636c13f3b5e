import Foundation
import Migration
import Posix
import Storage
@testable import VMState

// The migration stream as a destination reads it: frame headers (kind, flags, the
// per-kind payload limit), then each payload through its decoder — the start
// message's magic and version, the config (JSON, then the machine config's own
// validation), memory runs (alignment, encoding, length, and the run against a
// 64 MiB machine's memory map), disk runs (encoding, length, placement on a
// 64 MiB disk), disk plans and disk lists, the machine state (state.bin framing, binary
// payload, validation) and the text of abandon/refused — until the input ends.
// Protocol 2's disk messages are followed as the destination does: the `disks` list
// is decoded against the last `diskPlan` seen (the source's copy of it: the seeds
// hold a reply stream too), a `disk` run is checked against the disk the list
// describes, and a run that passes is written, as DiskReceiver does, through the
// qcow2 layer into a real overlay (DiskReceiver itself is in VMM, which the fuzz
// package does not build: it would bring KVM along).

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

/// The overlay disk runs are written into: 64 MiB, 4 KiB clusters (as the seeds' top
/// layer has; a run on whole clusters of 4 KiB or more is whole clusters here), one per process
/// (in /dev/shm when there is one, removed at exit). Bounded: at most its virtual size fills.
private let overlayDisk: (size: UInt64, clusterSize: UInt64) = (64 << 20, 4096)
nonisolated(unsafe) private var overlayPath = ""  // Sound because: libFuzzer calls the target from one thread.
private let overlay: Qcow2Image? = {
    let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    overlayPath = "\(dir)/fuzz-migration-\(getpid()).qcow2"
    var options = Qcow2Image.CreateOptions()
    options.clusterSize = overlayDisk.clusterSize
    guard (try? Qcow2Image.create(path: overlayPath, virtualSize: overlayDisk.size, options: options)) != nil,
          let image = try? Qcow2Image(path: overlayPath) else { return nil }
    atexit { unlink(overlayPath) }
    return image
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMigration(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let stream = InputStream(Array(UnsafeBufferPointer(start: data, count: size)))
    var plan = MigrationDiskPlan(copied: [true])  // one copied disk, as the seeds' VM has
    var list: MigrationDiskList?
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
            // The receiver's placement rule, against the disk the list describes (or a
            // 64 MiB disk of 4 KiB clusters when the input has no list).
            let described = list?.disks.first { $0.index == Int(run.disk) }
            guard (try? run.check(virtualSize: described?.virtualSize ?? overlayDisk.size,
                                  clusterSize: described?.clusterSize ?? overlayDisk.clusterSize)) != nil,
                  let overlay, (try? run.check(virtualSize: overlayDisk.size, clusterSize: overlayDisk.clusterSize)) != nil
            else { continue }
            switch run.encoding {
            case .data:
                payload.withUnsafeBytes { raw in
                    _ = try? overlay.write(UnsafeRawBufferPointer(rebasing: raw[DiskRun.headerSize...]), at: run.offset)
                }
            case .zero:
                _ = try? overlay.writeZeroes(at: run.offset, length: UInt64(run.length))
            }
        case .diskPlan:
            plan = (try? MigrationDiskPlan.parse(payload, disks: payload.count)) ?? plan
        case .disks:
            list = try? MigrationDiskList.decode(payload, plan: plan)
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
