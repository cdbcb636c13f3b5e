import Foundation
import Migration
import Posix
import Storage
import Testing
import VMState
@testable import VMM

/// The destination's side of disks without shared storage, without a VM:
/// which disks are copied, the backing chain checked before any transfer
/// (nothing left behind when refused), and every disk run checked before it
/// is written through the new overlay (docs/migration.md, "Disks without
/// shared storage").
struct DiskReceiverTests {
    final class Dir {
        let path = FileManager.default.temporaryDirectory.path + "/skiff-diskrecv-\(getpid())-\(UUID().uuidString.prefix(8))"
        init() { try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        func file(_ name: String) -> String { path + "/" + name }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    /// A 4 MiB qcow2 base with data in its first cluster, and its description as a source sends it.
    private func base(_ dir: Dir) throws -> (path: String, disk: MigrationDiskList.Disk) {
        let path = dir.file("base.qcow2")
        try Qcow2Image.create(path: path, virtualSize: 4 << 20)
        let image = try Qcow2Image(path: path)
        try [UInt8](repeating: 0x11, count: 65536).withUnsafeBytes { try image.write($0, at: 0) }
        try image.close()
        let layer = try FileDigest.layer(path: Machine.absolutePath(path), format: "qcow2")
        return (path, MigrationDiskList.Disk(index: 0, virtualSize: 4 << 20, clusterSize: 65536, backing: [layer]))
    }

    private func disk(_ format: String, readOnly: Bool = false) -> SnapshotMachineConfig.DeviceDescription {
        var d = SnapshotMachineConfig.DeviceDescription(kind: "virtio-block", address: 0xd000_0000, gsi: 5,
                                                        path: "/images/top.\(format)", readOnly: readOnly, serial: nil)
        d.format = format
        return d
    }

    @Test func onlyWritableQcow2DisksGivenANewPathAreCopied() throws {
        #expect(try DiskReceiver.plan(for: [disk("qcow2"), disk("raw")], overrides: ["/new/a.qcow2"]).copied == [true, false])
        #expect(try DiskReceiver.plan(for: [disk("qcow2")], overrides: []).copied == [false])
        // The recorded image's own path means shared storage.
        #expect(try DiskReceiver.plan(for: [disk("qcow2")], overrides: ["/images/top.qcow2"]).copied == [false])
        let refusals: [([SnapshotMachineConfig.DeviceDescription], [String], String)] = [
            ([disk("raw")], ["/new/a.qcow2"], "is a raw image; without shared storage only a qcow2 disk's top layer can be sent"),
            ([disk("qcow2", readOnly: true)], ["/new/a.qcow2"], "is read-only"),
            ([disk("qcow2")], ["/new/a.qcow2", "/new/b.qcow2"], "2 --disk given"),
        ]
        for (disks, overrides, needle) in refusals {
            #expect { _ = try DiskReceiver.plan(for: disks, overrides: overrides) } throws: { e in
                (e as? MigrationError).map { $0.kind == .refused && $0.message.contains(needle) } ?? false
            }
        }
    }

    @Test func anotherBackingChainIsRefusedAndLeavesNoOverlay() throws {
        let dir = Dir()
        let (_, good) = try base(dir)
        let overlay = dir.file("dest.qcow2")
        var variants: [(MigrationDiskList.Disk, String)] = []
        var size = good; size.backing[0].size += 512; variants.append((size, "bytes here"))
        var content = good; content.backing[0].sha256 = String(repeating: "0", count: 64); variants.append((content, "SHA-256"))
        var missing = good; missing.backing[0].path = dir.file("nothing.qcow2"); variants.append((missing, "does not exist here"))
        var format = good; format.backing[0].format = "raw"; variants.append((format, "is qcow2 here, raw at the source"))
        for (d, needle) in variants {
            let receiver = DiskReceiver()
            #expect { try receiver.prepare(MigrationDiskList(disks: [d]), overlays: [0: overlay]) } throws: { e in
                (e as? MigrationError).map { $0.kind == .refused && $0.message.contains("disk 0: the backing file")
                    && $0.message.contains(needle) } ?? false
            }
            #expect(!FileManager.default.fileExists(atPath: overlay))
        }
        // An existing file is never overwritten.
        _ = FileManager.default.createFile(atPath: overlay, contents: Data([1]))
        #expect(throws: MigrationError.self) { try DiskReceiver().prepare(MigrationDiskList(disks: [good]), overlays: [0: overlay]) }
        #expect(FileManager.default.contents(atPath: overlay) == Data([1]))
    }

    @Test func runsAreCheckedThenWrittenThroughTheOverlay() throws {
        let dir = Dir()
        let (basePath, d) = try base(dir)
        let overlay = dir.file("dest.qcow2")
        let receiver = DiskReceiver()
        try receiver.prepare(MigrationDiskList(disks: [d]), overlays: [0: overlay])
        func send(_ run: DiskRun, _ data: [UInt8] = []) throws {
            let stream = MigrationReceiveTests.Bytes(run.header() + data)
            try receiver.receive(MigrationFrame.Header(kind: .disk, length: run.frameLength), from: stream)
        }
        try send(DiskRun(offset: 65536, length: 131072, disk: 0, encoding: .data), [UInt8](repeating: 0x22, count: 131072))
        try send(DiskRun(offset: 0, length: 65536, disk: 0, encoding: .zero))  // hides the base's data
        let bad: [(DiskRun, String)] = [
            (DiskRun(offset: 4 << 20, length: 65536, disk: 0, encoding: .zero), "outside"),
            (DiskRun(offset: 512, length: 65536, disk: 0, encoding: .zero), "whole"),
            (DiskRun(offset: UInt64.max - 65535, length: 65536, disk: 0, encoding: .zero), "outside"),
            (DiskRun(offset: 0, length: 65536, disk: 1, encoding: .zero), "not being copied"),
        ]
        for (run, needle) in bad {
            #expect { try send(run) } throws: { e in
                (e as? MigrationError).map { $0.kind == .malformed && $0.message.contains(needle) } ?? false
            }
        }
        // A run cut short is the connection gone, not a partial write.
        #expect(throws: ByteStreamError.endOfStream) {
            try send(DiskRun(offset: 0, length: 65536, disk: 0, encoding: .data), [1, 2, 3])
        }
        try receiver.finish()
        let image = try Qcow2Image(path: overlay, readOnly: true)
        var bytes = [UInt8](repeating: 9, count: 4 * 65536)
        try bytes.withUnsafeMutableBytes { try image.read(into: $0, at: 0) }
        #expect(bytes[0..<65536].allSatisfy { $0 == 0 })
        #expect(bytes[65536..<(3 * 65536)].allSatisfy { $0 == 0x22 })
        #expect(bytes[(3 * 65536)...].allSatisfy { $0 == 0 })
        #expect(image.backingChain.map(\.path) == [Machine.absolutePath(basePath)])
        try image.close()
        // A failed migration removes the overlay it created.
        receiver.discard()
        #expect(!FileManager.default.fileExists(atPath: overlay))
    }
}
