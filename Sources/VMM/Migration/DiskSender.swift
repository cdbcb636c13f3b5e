import Migration
import Posix
import Storage
import Virtio

/// Sends the top qcow2 layer of each disk the destination does not share
/// (docs/migration.md, "Disks without shared storage"): the clusters the
/// layer maps in round 0, then each round the clusters written since the last
/// look, like dirty pages; the last round after the switch-over's pause.
///
/// The image belongs to the device's event loop; every look at it here
/// (tracking, reading clusters) happens with the device lock held, in short
/// pieces, so the guest's I/O waits at most one read of 1 MiB.
final class DiskSender {
    struct Disk {
        let index: Int
        let transport: VirtioMMIOTransport
        let block: VirtioBlock
        let image: Qcow2Image
        /// Read once under the device lock: the image is the event loop's.
        let virtualSize: UInt64
        let clusterSize: UInt64
        var pending: ClusterBitmap
        var clustersSent: UInt64 = 0
    }

    private(set) var disks: [Disk]
    /// Bytes put on the wire, frame headers included.
    private(set) var bytesSent: UInt64 = 0
    private var buffer: [UInt8] = []
    /// Bytes per data run.
    static let runBytes = 1 << 20

    /// The disks the plan marks, which must be writable qcow2 images (the
    /// destination refuses others already; checked again here).
    init(plan: MigrationDiskPlan, transports: [VirtioMMIOTransport]) throws {
        let blocks = transports.compactMap { t in (t.device as? VirtioBlock).map { (t, $0) } }
        guard plan.copied.count == blocks.count else {
            throw MigrationError(.malformed, "the destination's disk plan covers \(plan.copied.count) disk(s), the VM has \(blocks.count)")
        }
        disks = try blocks.enumerated().compactMap { index, pair -> Disk? in
            guard plan.copied[index] else { return nil }
            guard let image = pair.1.image as? Qcow2Image, !image.isReadOnly else {
                throw MigrationError(.refused, "disk \(index) (\(pair.1.image.path)) cannot be sent without shared storage: "
                    + "only a writable qcow2 image's top layer can be")
            }
            let (size, cluster, clusters) = pair.0.withDeviceLocked { (image.virtualSize, image.clusterSize, image.guestClusters) }
            return Disk(index: index, transport: pair.0, block: pair.1, image: image, virtualSize: size,
                        clusterSize: cluster, pending: ClusterBitmap(clusters: Int(clusters)))
        }
    }

    var isEmpty: Bool { disks.isEmpty }

    func sends(_ block: VirtioBlock) -> Bool { disks.contains { $0.block === block } }

    /// What the destination checks before any transfer: each disk's size and
    /// cluster size, and the files below its top layer with their SHA-256.
    func describe() throws -> MigrationDiskList {
        try MigrationDiskList(disks: disks.map { d in
            let (below, chain) = d.transport.withDeviceLocked {
                (Machine.layers(of: d.image).dropFirst(), d.image.backingChain.map(\.format))
            }
            let layers = try zip(below, chain).map { path, format in
                try FileDigest.layer(path: path, format: format.rawValue)
            }
            return MigrationDiskList.Disk(index: d.index, virtualSize: d.virtualSize, clusterSize: d.clusterSize, backing: layers)
        })
    }

    /// Starts tracking writes and takes the clusters the top layer maps as the
    /// first round's. In-flight requests complete first, so no write is lost
    /// between the two.
    func start() throws {
        for i in disks.indices {
            let d = disks[i]
            disks[i].pending = try d.transport.withDeviceLocked {
                d.block.quiesce()
                d.image.startTrackingWrites()
                return try d.image.allocatedClusters()
            }
        }
    }

    /// Adds the clusters written since the last look to the pending ones. The
    /// requests in flight complete first: their data is in the file before a
    /// cluster they marked is read.
    func harvest() {
        for i in disks.indices {
            let d = disks[i]
            let written = d.transport.withDeviceLocked {
                d.block.quiesce()
                return d.image.takeWrittenClusters()
            }
            disks[i].pending.formUnion(written)
        }
    }

    /// Bytes of clusters waiting to be sent.
    var pendingBytes: UInt64 {
        disks.reduce(0) { $0 + UInt64($1.pending.count) * $1.clusterSize }
    }

    /// Stops tracking (the migration ended either way).
    func stop() {
        for d in disks { d.transport.withDeviceLocked { d.image.stopTrackingWrites() } }
    }

    /// Sends every pending cluster: a cluster that reads as zeros as a zero
    /// run (nothing follows), the others as data, read through the image.
    func sendPending(to stream: ByteStream) throws {
        for i in disks.indices {
            let d = disks[i]
            let cs = Int(d.clusterSize)
            let perRun = max(1, Self.runBytes / cs)
            if buffer.count < max(Self.runBytes, cs) { buffer = [UInt8](repeating: 0, count: max(Self.runBytes, cs)) }
            for run in d.pending.runs(maxRun: perRun) {
                let offset = UInt64(run.lowerBound) * UInt64(cs)
                let length = Int(min(UInt64(run.count * cs), d.virtualSize - offset))
                try buffer.withUnsafeMutableBytes { raw in
                    let part = UnsafeMutableRawBufferPointer(rebasing: raw[0..<length])
                    try d.transport.withDeviceLocked { try d.image.read(into: part, at: offset) }
                    try send(UnsafeRawBufferPointer(part), at: offset, clusterSize: cs, disk: d.index, to: stream)
                }
                disks[i].clustersSent += UInt64(run.count)
            }
            disks[i].pending = ClusterBitmap(clusters: d.pending.clusters)
        }
    }

    /// `data` read at `offset`, split into runs of zero and non-zero clusters.
    private func send(_ data: UnsafeRawBufferPointer, at offset: UInt64, clusterSize cs: Int, disk: Int,
                      to stream: ByteStream) throws {
        func isZero(_ c: Int) -> Bool {
            let part = data[(c * cs)..<min(data.count, (c + 1) * cs)]
            return part.allSatisfy { $0 == 0 }
        }
        let clusters = (data.count + cs - 1) / cs
        var c = 0
        while c < clusters {
            let zero = isZero(c)
            var end = c + 1
            while end < clusters, isZero(end) == zero { end += 1 }
            let bytes = min(data.count, end * cs) - c * cs
            let run = DiskRun(offset: offset + UInt64(c * cs), length: UInt32(bytes), disk: UInt16(disk),
                              encoding: zero ? .zero : .data)
            try MigrationFrame.writeHeader(.disk, length: run.frameLength, to: stream)
            try run.header().withUnsafeBytes { try stream.write($0) }
            if !zero { try stream.write(UnsafeRawBufferPointer(rebasing: data[(c * cs)..<(c * cs + bytes)])) }
            bytesSent += UInt64(MigrationFrame.headerSize) + run.frameLength
            c = end
        }
    }

    /// For the log: "disk 0: 37 cluster(s) of 65536 bytes sent".
    var summary: String {
        disks.map { "disk \($0.index): \($0.clustersSent) cluster(s) of \($0.clusterSize) bytes sent" }
            .joined(separator: ", ")
    }
}
