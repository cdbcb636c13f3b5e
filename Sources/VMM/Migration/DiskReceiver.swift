import FoundationEssentials
import Migration
import Posix
import Storage
import VMState

/// The destination's side of disks without shared storage (docs/migration.md,
/// "Disks without shared storage"): checks that the backing chain here is the
/// source's, creates a new qcow2 overlay on it for each disk, and writes the
/// received clusters into it through the qcow2 layer, so its L2 tables and
/// refcounts are its own. Overlays it created are deleted if the migration
/// fails before the VM runs here.
final class DiskReceiver {
    struct Disk {
        let overlay: String
        let image: Qcow2Image
        let virtualSize: UInt64
        let clusterSize: UInt64
    }

    /// By disk index.
    private var disks: [Int: Disk] = [:]
    /// Overlays this receiver created (removed by `discard`).
    private(set) var created: [String] = []
    private var buffer: [UInt8] = []
    private(set) var bytesReceived: UInt64 = 0

    var isEmpty: Bool { disks.isEmpty }

    /// Which disks are copied: those given a `--disk path=` (by disk order)
    /// that is not the recorded image itself. A copied disk must be a writable
    /// qcow2 image (its top layer is what is sent).
    static func plan(for recorded: [SnapshotMachineConfig.DeviceDescription], overrides: [String]) throws -> MigrationDiskPlan {
        guard overrides.count <= recorded.count else {
            throw MigrationError(.refused, "\(overrides.count) --disk given, the incoming VM has \(recorded.count) disk(s)")
        }
        guard recorded.count <= MigrationDiskPlan.maxDisks else {
            throw MigrationError(.refused, "the VM has \(recorded.count) disks; at most \(MigrationDiskPlan.maxDisks) migrate")
        }
        return MigrationDiskPlan(copied: try recorded.enumerated().map { n, d in
            guard let override = overrides[safe: n] else { return false }
            if let path = d.path, Machine.absolutePath(override) == path { return false }
            guard d.format == DiskFormat.qcow2.rawValue else {
                throw MigrationError(.refused, "disk \(n): \(d.path ?? "?") is a \(d.format ?? "raw") image; without shared "
                    + "storage only a qcow2 disk's top layer can be sent (put the disk on shared storage, or use a qcow2 overlay)")
            }
            guard d.readOnly != true else {
                throw MigrationError(.refused, "disk \(n): \(d.path ?? "?") is read-only; without shared storage only a "
                    + "writable qcow2 disk's top layer is sent (give the read-only disk on shared storage)")
            }
            return true
        })
    }

    /// Checks each described disk's backing chain against the files here and
    /// creates its overlay at `overlays[index]`; refuses (naming the disk and
    /// the file) before anything is transferred. On failure nothing it created stays.
    func prepare(_ list: MigrationDiskList, overlays: [Int: String]) throws {
        do {
            for d in list.disks {
                guard let overlay = overlays[d.index] else {
                    throw MigrationError(.malformed, "the disks message describes disk \(d.index), which is not copied")
                }
                try Self.checkChain(d)
                guard !FileManager.default.fileExists(atPath: overlay) else {
                    throw MigrationError(.refused, "disk \(d.index): \(overlay) exists; the destination writes a new overlay "
                        + "(give a path that does not exist)")
                }
                var options = Qcow2Image.CreateOptions()
                options.clusterSize = d.clusterSize
                if let below = d.backing.first {
                    options.backingFile = below.path
                    options.backingFormat = DiskFormat(rawValue: below.format)
                }
                do {
                    try Qcow2Image.create(path: overlay, virtualSize: d.virtualSize, options: options)
                } catch {
                    throw MigrationError(.refused, "disk \(d.index): cannot create the overlay \(overlay): \(error)")
                }
                created.append(overlay)
                let image: Qcow2Image
                do {
                    image = try Qcow2Image(path: overlay)
                } catch {
                    throw MigrationError(.refused, "disk \(d.index): cannot open the new overlay \(overlay): \(error)")
                }
                // The chain the overlay opens here must be the files just checked.
                let opened = Array(Machine.layers(of: image).dropFirst())
                guard opened == d.backing.map(\.path), image.virtualSize == d.virtualSize else {
                    throw MigrationError(.refused, "disk \(d.index): the overlay's backing chain here is "
                        + "\(opened.joined(separator: " → ")), the source's \(d.backing.map(\.path).joined(separator: " → "))")
                }
                disks[d.index] = Disk(overlay: overlay, image: image, virtualSize: d.virtualSize, clusterSize: d.clusterSize)
            }
        } catch {
            discard()
            throw error
        }
    }

    /// Each file below the top must be here, at the same path, with the same
    /// format, size and SHA-256.
    static func checkChain(_ d: MigrationDiskList.Disk) throws {
        for layer in d.backing {
            let what = "disk \(d.index): the backing file \(layer.path)"
            guard FileManager.default.fileExists(atPath: layer.path) else {
                throw MigrationError(.refused, "\(what) does not exist here; without shared storage the destination "
                    + "needs an identical copy of the disk's backing chain at the same path")
            }
            let format: DiskFormat
            do { format = try DiskImageOpener.detectFormat(path: layer.path) } catch {
                throw MigrationError(.refused, "\(what) cannot be read here: \(error)")
            }
            guard format.rawValue == layer.format else {
                throw MigrationError(.refused, "\(what) is \(format.rawValue) here, \(layer.format) at the source")
            }
            let here = try FileDigest.sha256(path: layer.path)
            guard here.size == layer.size else {
                throw MigrationError(.refused, "\(what) differs from the source's: \(here.size) bytes here, \(layer.size) there")
            }
            guard here.hex == layer.sha256 else {
                throw MigrationError(.refused, "\(what) differs from the source's: SHA-256 \(here.hex.prefix(16))… here, "
                    + "\(layer.sha256.prefix(16))… there")
            }
        }
    }

    /// One `disk` frame: the run is checked to lie on whole clusters of a
    /// copied disk, then written through the overlay's qcow2 layer.
    func receive(_ header: MigrationFrame.Header, from stream: ByteStream) throws {
        var runBytes = [UInt8](repeating: 0, count: DiskRun.headerSize)
        guard header.length >= UInt64(DiskRun.headerSize) else {
            throw MigrationError(.malformed, "disk message of \(header.length) bytes, shorter than its run header")
        }
        try runBytes.withUnsafeMutableBytes { try stream.read(into: $0) }
        let run = try DiskRun.parse(runBytes, frameLength: header.length)
        guard let disk = disks[Int(run.disk)] else {
            throw MigrationError(.malformed, "disk run for disk \(run.disk), which is not being copied")
        }
        try run.check(virtualSize: disk.virtualSize, clusterSize: disk.clusterSize)
        switch run.encoding {
        case .data:
            if buffer.count < Int(DiskRun.maxDataBytes) { buffer = [UInt8](repeating: 0, count: Int(DiskRun.maxDataBytes)) }
            try buffer.withUnsafeMutableBytes { raw in
                let part = UnsafeMutableRawBufferPointer(rebasing: raw[0..<Int(run.length)])
                try stream.read(into: part)
                try disk.image.write(UnsafeRawBufferPointer(part), at: run.offset)
            }
        case .zero:
            try disk.image.writeZeroes(at: run.offset, length: UInt64(run.length))
        }
        bytesReceived += header.length
    }

    /// Makes what was received so far durable (at the end of each round, so
    /// the flush inside the downtime covers only the last round).
    func flush() throws {
        for (index, d) in disks {
            do { try d.image.flush() } catch {
                throw MigrationError(.failed, "disk \(index): cannot write the overlay \(d.overlay): \(error)")
            }
        }
    }

    /// Flushes and closes the overlays (the VM's devices open them next).
    func finish() throws {
        for (index, d) in disks.sorted(by: { $0.key < $1.key }) {
            do { try d.image.close() } catch {
                throw MigrationError(.failed, "disk \(index): cannot write the overlay \(d.overlay): \(error)")
            }
        }
        disks = [:]
    }

    /// The migration failed: the overlays created here are closed and deleted
    /// (they hold a half-received disk that nothing should run on).
    func discard() {
        for d in disks.values { try? d.image.close() }
        disks = [:]
        for path in created { try? FileManager.default.removeItem(atPath: path) }
        created = []
    }
}
