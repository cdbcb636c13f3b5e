import Foundation
import Testing
@testable import Storage

/// `skiff image check` and `info` agree with qemu-img on clean, leaky and corrupt images.
@Suite struct CheckAndInfoTests {
    func qemuCounts(_ path: String) throws -> (status: Int32, leaks: Int, errors: Int) {
        let r = try qemuImg("check", "--output=json", path)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] ?? [:]
        return (r.status, json["leaks"] as? Int ?? 0, json["corruptions"] as? Int ?? 0)
    }

    func image(_ dir: TempDir) throws -> (String, UInt64) {
        let path = dir.file("c.qcow2")
        try Qcow2Image.create(path: path, virtualSize: 64 << 20)
        let img = try Qcow2Image(path: path)
        for i in 0 ..< 10 { try img.write(pattern(70000, seed: UInt64(i)), at: UInt64(i) * 3_000_000) }
        let l1 = img.header.l1TableOffset
        try img.close()
        let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        try h.seek(toOffset: l1)
        let l2 = Array(h.readData(ofLength: 8)).be64(0) & Qcow2Entry.offsetMask
        try h.close()
        return (path, l2)
    }

    func patch64(_ path: String, at offset: UInt64, _ v: UInt64) throws {
        var b = [UInt8](repeating: 0, count: 8); b.putBE64(v, at: 0)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seek(toOffset: offset)
        h.write(Data(b))
        try h.close()
    }

    @Test func cleanImage() throws {
        let dir = TempDir()
        let (path, _) = try image(dir)
        let report = try Qcow2Image(path: path, readOnly: true).check()
        #expect(report.exitCode == 0, "\(report.formatted)")
        #expect(report.formatted.contains("No errors were found on the image."))
        let q = try qemuImg("check", "--output=json", path)
        let json = try JSONSerialization.jsonObject(with: Data(q.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(q.status == 0)
        #expect(json["allocated-clusters"] as? Int == Int(report.allocatedClusters))
        #expect(json["total-clusters"] as? Int == Int(report.totalClusters))
    }

    @Test func leakedCluster() throws {
        let dir = TempDir()
        let (path, l2) = try image(dir)
        try patch64(path, at: l2, 0) // drop guest cluster 0's reference: its data cluster leaks
        let report = try Qcow2Image(path: path, readOnly: true).check()
        let q = try qemuCounts(path)
        #expect(report.exitCode == 3 && q.status == 3, "\(report.formatted)")
        #expect(report.leaks == q.leaks && report.leaks == 1)
        #expect(report.formatted.contains("1 leaked clusters were found on the image."))
    }

    @Test func referencedClusterWithZeroRefcount() throws {
        let dir = TempDir()
        let (path, l2) = try image(dir)
        // Point guest cluster 1 at guest cluster 0's data: that cluster now has 2 references, refcount 1.
        let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        try h.seek(toOffset: l2)
        let e0 = Array(h.readData(ofLength: 8)).be64(0)
        try h.close()
        try patch64(path, at: l2 + 8, e0)
        let report = try Qcow2Image(path: path, readOnly: true).check()
        let q = try qemuCounts(path)
        #expect(report.exitCode == 2 && q.status == 2, "\(report.formatted)")
        #expect(report.corruptions >= 1 && q.errors >= 1)
    }

    @Test func infoShowsChain() throws {
        let dir = TempDir()
        try RawImage.create(path: dir.file("base.raw"), size: 1 << 30)
        var o = Qcow2Image.CreateOptions()
        o.backingFile = "base.raw"
        try Qcow2Image.create(path: dir.file("mid.qcow2"), options: o)
        o.backingFile = "mid.qcow2"
        o.clusterSize = 4096
        try Qcow2Image.create(path: dir.file("top.qcow2"), options: o)
        let info = try ImageInfo.read(path: dir.file("top.qcow2"))
        #expect(info.format == .qcow2 && info.virtualSize == 1 << 30 && info.clusterSize == 4096)
        #expect(info.backingFile == "mid.qcow2" && info.backingFormat == "qcow2")
        #expect(info.chain.map(\.format) == [.qcow2, .raw])
        #expect(info.formatted.contains("virtual size: 1 GiB (1073741824 bytes)"))
        #expect(info.formatted.contains("backing chain: \(dir.file("top.qcow2")) -> \(dir.file("mid.qcow2")) -> \(dir.file("base.raw"))"))
        let q = try qemuImg("info", "--backing-chain", "--output=json", dir.file("top.qcow2"))
        #expect(q.status == 0 && q.stdout.contains("\"backing-filename\": \"mid.qcow2\""), "\(q.stdout)")
        // Info of an image a writer holds needs force-share.
        let w = try DiskImageOpener.open(path: dir.file("top.qcow2"))
        expectStorageError(.locked) { _ = try ImageInfo.read(path: dir.file("top.qcow2")) }
        #expect(try ImageInfo.read(path: dir.file("top.qcow2"), forceShare: true).virtualSize == 1 << 30)
        _ = w
    }

    @Test func qemuSeesSkiffLockOnQcow2() throws {
        let dir = TempDir()
        try Qcow2Image.create(path: dir.file("a.qcow2"), virtualSize: 1 << 20)
        let w = try DiskImageOpener.open(path: dir.file("a.qcow2"))
        let r = try qemuImg("info", dir.file("a.qcow2"))
        #expect(r.status != 0 && r.stderr.contains("lock"), "\(r.stderr)")
        _ = w
    }
}
