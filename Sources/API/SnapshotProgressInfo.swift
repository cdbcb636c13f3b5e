/// `vm.info`'s `snapshot` object: how far the snapshot being written (or the
/// last one) has got, so a client can show progress for a large guest.
public struct SnapshotProgressInfo: Codable, Sendable, Equatable {
    /// "disks", "memory", "state", then "done" or "failed".
    public var phase: String
    /// Guest RAM size, and how much of it has been looked at and written (non-zero pages).
    public var memoryBytes: UInt64
    public var memoryBytesScanned: UInt64
    public var memoryBytesWritten: UInt64
    /// Bytes copied for the disks' frozen top layers so far.
    public var diskBytesCopied: UInt64
    /// Since the request (pause included).
    public var elapsedMs: UInt64

    public init(phase: String, memoryBytes: UInt64, memoryBytesScanned: UInt64, memoryBytesWritten: UInt64,
                diskBytesCopied: UInt64, elapsedMs: UInt64) {
        self.phase = phase
        self.memoryBytes = memoryBytes
        self.memoryBytesScanned = memoryBytesScanned
        self.memoryBytesWritten = memoryBytesWritten
        self.diskBytesCopied = diskBytesCopied
        self.elapsedMs = elapsedMs
    }

    enum CodingKeys: String, CodingKey {
        case phase
        case memoryBytes = "memory_bytes"
        case memoryBytesScanned = "memory_bytes_scanned"
        case memoryBytesWritten = "memory_bytes_written"
        case diskBytesCopied = "disk_bytes_copied"
        case elapsedMs = "elapsed_ms"
    }

    /// One line for a terminal: "snapshot: memory 120/256 MiB scanned, 40 MiB written, 310 MiB/s".
    public var line: String {
        let mib = { (b: UInt64) in "\(b >> 20)" }
        let rate = elapsedMs > 0 ? (memoryBytesScanned + diskBytesCopied) / 1048576 * 1000 / elapsedMs : 0
        var text = "snapshot: \(phase), memory \(mib(memoryBytesScanned))/\(mib(memoryBytes)) MiB scanned, "
            + "\(mib(memoryBytesWritten)) MiB written"
        if diskBytesCopied > 0 { text += ", disks \(mib(diskBytesCopied)) MiB copied" }
        return text + ", \(rate) MiB/s, \(elapsedMs) ms"
    }
}
