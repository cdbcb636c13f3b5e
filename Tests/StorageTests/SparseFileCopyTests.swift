import Foundation
import Testing
@testable import Storage

/// The copy a snapshot makes of a disk's top layer, and the backing name it
/// rewrites in that copy's header.
struct SparseFileCopyTests {
    static func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("skiff-copy-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)").path
    }

    @Test func copiesDataAndKeepsHoles() throws {
        let source = Self.temporary("src"), destination = Self.temporary("dst")
        defer { unlink(source); unlink(destination) }
        #expect(FileManager.default.createFile(atPath: source, contents: nil))
        let handle = try #require(FileHandle(forWritingAtPath: source))
        try handle.truncate(atOffset: 64 << 20)
        for offset: UInt64 in [0, 7 << 20, (64 << 20) - 4096] {
            try handle.seek(toOffset: offset)
            handle.write(Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &+ Int(offset >> 20)) }))
        }
        try handle.close()
        let result = try SparseFileCopy.copy(from: source, to: destination)
        #expect(result.size == 64 << 20)
        #expect(try Data(contentsOf: URL(fileURLWithPath: destination)) == Data(contentsOf: URL(fileURLWithPath: source)))
        var st = stat()
        #expect(stat(destination, &st) == 0 && st.st_blocks * 512 <= 1 << 20, "\(st.st_blocks) blocks allocated")
        #expect(result.reflinked || result.bytesCopied <= 1 << 20, "copied \(result.bytesCopied) bytes")
    }

    @Test func refusesAnExistingDestinationAndAMissingSource() throws {
        let source = Self.temporary("src"), destination = Self.temporary("dst")
        defer { unlink(source); unlink(destination) }
        #expect(throws: StorageError.self) { try SparseFileCopy.copy(from: source, to: destination) }
        #expect(FileManager.default.createFile(atPath: source, contents: Data([1, 2, 3])))
        #expect(FileManager.default.createFile(atPath: destination, contents: Data([9])))
        #expect(throws: StorageError.self) { try SparseFileCopy.copy(from: source, to: destination) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: destination)) == Data([9]), "an existing file was overwritten")
    }

    @Test func backingNameIsRewrittenAndTheImageStillOpens() throws {
        let dir = Self.temporary("dir")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = dir + "/base.qcow2", top = dir + "/top.qcow2", moved = dir + "/sub/top.qcow2"
        try Qcow2Image.create(path: base, virtualSize: 8 << 20)
        var o = Qcow2Image.CreateOptions()
        o.backingFile = "base.qcow2"
        try Qcow2Image.create(path: top, options: o)
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        _ = try SparseFileCopy.copy(from: top, to: moved)
        // The relative name no longer resolves from the copy's directory…
        #expect(throws: StorageError.self) { try Qcow2Image(path: moved, readOnly: true) }
        try Qcow2Image.setBackingFileName(path: moved, to: base)
        // …the absolute one does, and the header is otherwise intact.
        let image = try Qcow2Image(path: moved, readOnly: true)
        #expect(image.backingFileName == base)
        #expect(image.virtualSize == 8 << 20)
        #expect(try image.check().exitCode == 0)
        // An image without a backing file has no name to rewrite.
        #expect(throws: StorageError.self) { try Qcow2Image.setBackingFileName(path: base, to: "/x") }
    }
}
