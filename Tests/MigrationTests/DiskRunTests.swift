import Foundation
import Migration
import Posix
import Testing

/// The disk messages of protocol 2 (docs/migration.md, "Disks without shared
/// storage"): run headers, their placement on the disk, plans and disk lists.
struct DiskRunTests {
    @Test func runsRoundTripThroughAFrame() throws {
        let s = MemoryStream()
        let run = DiskRun(offset: 3 << 16, length: 2 << 16, disk: 1, encoding: .data)
        try MigrationFrame.writeHeader(.disk, length: run.frameLength, to: s)
        try run.header().withUnsafeBytes { try s.write($0) }
        try [UInt8](repeating: 7, count: 2 << 16).withUnsafeBytes { try s.write($0) }
        let h = try MigrationFrame.readHeader(from: s)
        #expect(h == MigrationFrame.Header(kind: .disk, length: 16 + (2 << 16)))
        let payload = try MigrationFrame.readPayload(h, from: s)
        #expect(try DiskRun.parse(Array(payload.prefix(16)), frameLength: h.length) == run)
        // Version 2 adds the disk messages; a version 1 stream is still received.
        #expect(MigrationVersion.current == 2 && MigrationVersion.oldestAccepted == 1)
        #expect(try MigrationVersion.check(startPayload: MigrationVersion.startPayload(version: 1)) == 1)
    }

    @Test func hostileRunHeadersAreClearErrors() {
        func bytes(_ offset: UInt64, _ length: UInt32, _ disk: UInt16, _ encoding: UInt16) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: 16)
            b.withUnsafeMutableBytes {
                $0.storeBytes(of: offset.littleEndian, toByteOffset: 0, as: UInt64.self)
                $0.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
                $0.storeBytes(of: disk.littleEndian, toByteOffset: 12, as: UInt16.self)
                $0.storeBytes(of: encoding.littleEndian, toByteOffset: 14, as: UInt16.self)
            }
            return b
        }
        let cases: [([UInt8], UInt64, String)] = [
            (bytes(0, 65536, 0, 2), 16 + 65536, "unknown encoding 2"),
            (bytes(0, 0, 0, 1), 16, "data runs hold"),
            (bytes(0, 4 << 20, 0, 0), 16 + (4 << 20), "data runs hold"),
            (bytes(0, 65536, 0, 0), 16 + 512, "expected 65552"),
            (bytes(0, 65536, 0, 1), 16 + 65536, "expected 16"),
            (bytes(0, 65536, 0, 0), 8, "shorter than its run header"),
        ]
        for (header, frame, needle) in cases {
            do {
                _ = try DiskRun.parse(header, frameLength: frame)
                Issue.record("accepted \(header) in \(frame) bytes")
            } catch let e as MigrationError {
                #expect(e.kind == .malformed)
                #expect(e.message.contains(needle), "\(e.message)")
            } catch {
                Issue.record("\(error)")
            }
        }
        // The frame limit stops a data run over 2 MiB before anything is read.
        #expect(MigrationFrame.Kind.disk.payloadLimit == 16 + (2 << 20))
    }

    @Test func runsMustLieOnWholeClustersInsideTheDisk() throws {
        let size: UInt64 = (64 << 20) - 512  // a last, partial cluster
        let cs: UInt64 = 65536
        try DiskRun(offset: 0, length: 65536, disk: 0, encoding: .data).check(virtualSize: size, clusterSize: cs)
        try DiskRun(offset: (64 << 20) - 65536, length: 65536 - 512, disk: 0, encoding: .data).check(virtualSize: size, clusterSize: cs)
        try DiskRun(offset: 0, length: UInt32(size), disk: 0, encoding: .zero).check(virtualSize: size, clusterSize: cs)
        let bad: [(DiskRun, String)] = [
            (DiskRun(offset: 512, length: 65536, disk: 0, encoding: .data), "whole"),
            (DiskRun(offset: 0, length: 4096, disk: 0, encoding: .data), "whole"),
            (DiskRun(offset: 64 << 20, length: 65536, disk: 0, encoding: .zero), "outside"),
            (DiskRun(offset: UInt64.max - 100, length: 65536, disk: 0, encoding: .zero), "outside"),
            (DiskRun(offset: (64 << 20) - 65536, length: 65536, disk: 0, encoding: .data), "outside"),
        ]
        for (run, needle) in bad {
            #expect { try run.check(virtualSize: size, clusterSize: cs) } throws: { e in
                (e as? MigrationError).map { $0.kind == .malformed && $0.message.contains(needle) } ?? false
            }
        }
    }

    @Test func plansAndDiskListsAreChecked() throws {
        #expect(try MigrationDiskPlan.parse([0, 1], disks: 2).copied == [false, true])
        #expect(throws: MigrationError.self) { try MigrationDiskPlan.parse([0, 2], disks: 2) }
        #expect(throws: MigrationError.self) { try MigrationDiskPlan.parse([1], disks: 2) }
        let plan = MigrationDiskPlan(copied: [false, true])
        let layer = MigrationDiskList.Layer(path: "/images/base.qcow2", format: "qcow2", size: 1 << 20,
                                            sha256: String(repeating: "ab", count: 32))
        let good = MigrationDiskList(disks: [.init(index: 1, virtualSize: 64 << 20, clusterSize: 65536, backing: [layer])])
        #expect(try MigrationDiskList.decode(try good.encoded(), plan: plan) == good)
        var variants: [MigrationDiskList] = []
        var wrongDisk = good; wrongDisk.disks[0].index = 0; variants.append(wrongDisk)
        var oddCluster = good; oddCluster.disks[0].clusterSize = 65535; variants.append(oddCluster)
        var hugeCluster = good; hugeCluster.disks[0].clusterSize = 4 << 20; variants.append(hugeCluster)
        var relative = good; relative.disks[0].backing[0].path = "base.qcow2"; variants.append(relative)
        var badFormat = good; badFormat.disks[0].backing[0].format = "vmdk"; variants.append(badFormat)
        var badSize = good; badSize.disks[0].virtualSize = 1000; variants.append(badSize)
        for v in variants {
            #expect(throws: MigrationError.self) { try MigrationDiskList.decode(try v.encoded(), plan: plan) }
        }
        #expect(throws: MigrationError.self) { try MigrationDiskList.decode(Array("{".utf8), plan: plan) }
    }
}
