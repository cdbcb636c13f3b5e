import Foundation
import Testing
@testable import Storage

/// A migration's lock hand-over (docs/migration.md, "Disks"): the source
/// releases its image's lock, the destination opens it for writing, and a
/// source that takes the lock back is refused while the destination has it.
@Suite struct ImageLockHandOverTests {
    @Test(arguments: [DiskFormat.raw, .qcow2])
    func releaseLetsAnotherWriterInAndRetakeWaitsForIt(format: DiskFormat) throws {
        let dir = TempDir()
        let base = dir.file("base.qcow2")
        let path = dir.file("top.\(format.rawValue)")
        if format == .raw {
            try RawImage.create(path: path, size: 1 << 20)
        } else {
            try Qcow2Image.create(path: base, virtualSize: 1 << 20)
            var options = Qcow2Image.CreateOptions()
            options.backingFile = base
            options.backingFormat = .qcow2
            try Qcow2Image.create(path: path, virtualSize: 1 << 20, options: options)
        }
        let source = try DiskImageOpener.open(path: path, format: format)
        expectStorageError(.locked) { _ = try DiskImageOpener.open(path: path, format: format) }
        try DiskImageOpener.releaseLock(of: source)
        var destination: DiskImage? = try DiskImageOpener.open(path: path, format: format)
        let e = expectStorageError(.locked) { try DiskImageOpener.retakeLock(of: source) }
        #expect(e?.description.contains("writing") == true)
        destination = nil
        try DiskImageOpener.retakeLock(of: source)
        expectStorageError(.locked) { _ = try DiskImageOpener.open(path: path, format: format) }
        _ = destination
    }
}
