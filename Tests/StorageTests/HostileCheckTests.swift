import Foundation
import Testing
@testable import Storage

/// `skiff image check` on files made to exhaust it: a sparse file can claim any
/// length for free and a header any snapshot count. The check must finish quickly,
/// in modest memory, with a clear report or a clear error (issue #7).
@Suite(.serialized) struct HostileCheckTests {
    /// A small valid image with 512-byte clusters (the most clusters per byte of file)
    /// and some data, closed.
    func smallImage(_ dir: TempDir, clusterSize: UInt64 = 512) throws -> String {
        let path = dir.file("h.qcow2")
        var o = Qcow2Image.CreateOptions()
        o.clusterSize = clusterSize
        try Qcow2Image.create(path: path, virtualSize: 8 << 20, options: o)
        let img = try Qcow2Image(path: path)
        for i in 0 ..< 8 { try img.write(pattern(3000, seed: UInt64(i)), at: UInt64(i) * 1_000_000) }
        try img.close()
        return path
    }

    func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seek(toOffset: offset)
        h.write(Data(bytes))
        try h.close()
    }

    /// Peak resident memory of this process so far, in bytes.
    func peakRSS() -> Int {
        var u = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        return u.ru_maxrss * 1024
    }

    /// Nearly 1 TiB of sparse file behind a 512-byte-cluster image: 2^31 - 1 clusters.
    /// The check used to allocate a counter per cluster of the file (8 GiB) and read a
    /// refcount for each (minutes); now it visits what the metadata describes.
    @Test func hugeSparseFileIsCheckedQuicklyInLittleMemory() throws {
        let dir = TempDir()
        let path = try smallImage(dir)
        #expect(truncate(path, off_t(Int32.max) * 512) == 0)
        let clock = ContinuousClock()
        let start = clock.now
        let report = try Qcow2Image(path: path, readOnly: true).check()
        #expect(clock.now - start < .seconds(20))
        #expect(peakRSS() < 2 << 30, "peak RSS \(peakRSS() >> 20) MiB")
        #expect(report.exitCode == 0, "\(report.formatted)")
        #expect(report.imageEndOffset == UInt64(Int32.max) * 512)
        #expect(report.allocatedClusters > 0)
    }

    /// One cluster more than qemu-img checks (INT_MAX clusters): a clear refusal.
    @Test func fileBeyondQemuLimitIsRefused() throws {
        let dir = TempDir()
        let path = try smallImage(dir)
        #expect(truncate(path, 1 << 40) == 0)
        let e = expectStorageError(.unsupportedFeature) { _ = try Qcow2Image(path: path, readOnly: true).check() }
        #expect(e?.description.contains("too large to check") == true, "\(String(describing: e))")
    }

    /// nb_snapshots of 2^32 - 1 made check read snapshot entries (past the end of the
    /// file: zeroes) four billion times. QEMU refuses more than 65536 at open.
    @Test func absurdSnapshotCountIsRefused() throws {
        let dir = TempDir()
        let path = try smallImage(dir, clusterSize: 65536)
        try patch(path, at: 60, [0xff, 0xff, 0xff, 0xff])              // nb_snapshots
        try patch(path, at: 64, [0, 0, 0, 0, 0, 1, 0, 0])              // snapshots_offset 64 KiB
        let e = expectStorageError(.invalidFormat) { _ = try Qcow2Image(path: path, readOnly: true) }
        #expect(e?.description.contains("4294967295 snapshots") == true, "\(String(describing: e))")
    }

    /// The most snapshots QEMU allows, over a table that runs off the end of the file:
    /// check stops at the end and says so.
    @Test func snapshotTablePastTheEndIsACorruption() throws {
        let dir = TempDir()
        let path = try smallImage(dir, clusterSize: 65536)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! UInt64
        #expect(truncate(path, off_t(size + 65536)) == 0)               // one zeroed cluster for the table
        try patch(path, at: 60, [0, 1, 0, 0])                           // nb_snapshots 65536
        var offset = [UInt8](repeating: 0, count: 8); offset.putBE64(size, at: 0)
        try patch(path, at: 64, offset)                                 // snapshots_offset
        let clock = ContinuousClock()
        let start = clock.now
        let report = try Qcow2Image(path: path, readOnly: true).check()
        #expect(clock.now - start < .seconds(20))
        #expect(report.exitCode == 2)
        #expect(report.messages.contains { $0.contains("snapshot table") }, "\(report.formatted)")
    }
}
