import Foundation
import Testing
@testable import Storage

/// What a migration without shared storage reads from the top qcow2 layer:
/// the clusters it maps, and the clusters written once tracking started, by
/// every write path (docs/migration.md, "Disks without shared storage").
struct WriteTrackingTests {
    private func overlay(_ dir: TempDir) throws -> Qcow2Image {
        let base = dir.file("base.qcow2"), top = dir.file("top.qcow2")
        try Qcow2Image.create(path: base, virtualSize: 8 << 20)
        let b = try Qcow2Image(path: base)
        try [UInt8](repeating: 0x55, count: 1 << 20).withUnsafeBytes { try b.write($0, at: 0) }
        try b.close()
        var options = Qcow2Image.CreateOptions()
        options.backingFile = base
        try Qcow2Image.create(path: top, options: options)
        return try Qcow2Image(path: top)
    }

    @Test func allocatedClustersAreTheTopLayersOwn() throws {
        let dir = TempDir()
        let top = try overlay(dir)
        #expect(try top.allocatedClusters().isEmpty)  // the base's data is not the top layer's
        try [UInt8](repeating: 1, count: 512).withUnsafeBytes { try top.write($0, at: 3 * 65536 + 100) }
        try top.writeZeroes(at: 5 * 65536, length: 65536)  // a zero cluster hides the base
        try [UInt8](repeating: 2, count: 2 << 16).withUnsafeBytes { try top.write($0, at: 100 * 65536) }
        let map = try top.allocatedClusters()
        #expect(map.runs(maxRun: 16) == [3..<4, 5..<6, 100..<102])
        #expect(top.guestClusters == 128)
        try top.close()
        // Reopened: the same from the file's own tables.
        let again = try Qcow2Image(path: dir.file("top.qcow2"))
        #expect(try again.allocatedClusters() == map)
    }

    @Test func everyWritePathIsTracked() throws {
        let dir = TempDir()
        let top = try overlay(dir)
        try [UInt8](repeating: 1, count: 512).withUnsafeBytes { try top.write($0, at: 0) }
        #expect(top.takeWrittenClusters().isEmpty)  // not tracking: nothing recorded
        top.startTrackingWrites()
        try [UInt8](repeating: 1, count: 1024).withUnsafeBytes { try top.write($0, at: 65536 - 512) }  // straddles 0 and 1
        try top.discard(at: 4 * 65536, length: 65536)
        try top.writeZeroes(at: 6 * 65536 + 512, length: 512)
        // The async engine's direct writes: marked when their place is handed out.
        _ = try top.dataExtents(at: 0, length: 512, forWrite: true)
        _ = try top.dataExtents(at: 9 * 65536, length: 512, forWrite: false)  // a read marks nothing
        let taken = top.takeWrittenClusters()
        #expect(taken.runs(maxRun: 64) == [0..<2, 4..<5, 6..<7])
        #expect(top.takeWrittenClusters().isEmpty)  // taken means cleared
        try [UInt8](repeating: 3, count: 512).withUnsafeBytes { try top.write($0, at: 127 * 65536) }
        #expect(top.takeWrittenClusters().runs(maxRun: 64) == [127..<128])
        top.stopTrackingWrites()
        try [UInt8](repeating: 3, count: 512).withUnsafeBytes { try top.write($0, at: 0) }
        #expect(top.takeWrittenClusters().isEmpty)
    }

    @Test func bitmapRunsAreSplitAndMerged() {
        var a = ClusterBitmap(clusters: 200)
        a.insert(first: 60, count: 70)
        a.insert(first: 199, count: 10)  // clipped to the bitmap
        #expect(a.count == 71)
        #expect(a.runs(maxRun: 32) == [60..<92, 92..<124, 124..<130, 199..<200])
        var b = ClusterBitmap(clusters: 200)
        b.insert(first: 0, count: 1)
        b.formUnion(a)
        #expect(b.count == 72 && b.contains(0) && b.contains(199) && !b.contains(59))
    }
}
