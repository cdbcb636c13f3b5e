import FoundationEssentials

/// A snapshot read back and checked: ready for a restore to rebuild the
/// machine from `manifest.machine`, map `memoryFileURL` and apply `state`.
public struct Snapshot: Sendable {
    public var manifest: SnapshotManifest
    public var state: MachineState
    public var memoryFileURL: URL
}

/// Reads a snapshot directory written by `SnapshotWriter`, treating every byte
/// as hostile: sizes are checked before anything is read or allocated, both
/// checksums of `state.bin` (its own trailer and the manifest's) must match,
/// and the state must agree with the config (vCPU count, devices, memory size).
/// Each problem is one `SnapshotError` with its kind; nothing traps.
public struct SnapshotReader {
    public let directory: URL

    public init(directory: URL) {
        self.directory = directory
    }

    /// - Parameter verifyMemoryChecksum: read the whole memory file to check its
    ///   CRC-64 (when the manifest has one). Off by default: a restore maps the
    ///   file lazily, and reading it all would undo that; its size is always checked.
    public func read(verifyMemoryChecksum: Bool = false) throws -> Snapshot {
        let manifestURL = directory.appendingPathComponent(SnapshotWriter.manifestName)
        let manifestBytes = try SnapshotFileIO.read(manifestURL, limit: SnapshotManifest.Limits.manifestBytes)
        let manifest: SnapshotManifest
        do {
            manifest = try JSONDecoder().decode(SnapshotManifest.self, from: Data(manifestBytes))
        } catch {
            throw SnapshotError(.malformed, "\(SnapshotWriter.manifestName) does not decode: \(error)")
        }
        try manifest.validate()

        let stateEntry = manifest.file(.state)!
        let stateURL = directory.appendingPathComponent(stateEntry.name)
        let stateBytes = try SnapshotFileIO.read(stateURL, limit: StateFile.headerSize + StateFile.maxPayload + StateFile.trailerSize)
        // The file's own framing first: it tells truncation from other damage.
        let state = try StateFile.decode(stateBytes, name: stateEntry.name)
        guard UInt64(stateBytes.count) == stateEntry.size else {
            throw SnapshotError(.sizeMismatch, "\(stateEntry.name) is \(stateBytes.count) bytes, the manifest says \(stateEntry.size)")
        }
        if let listed = stateEntry.crc64 {
            let actual = CRC64.hex(CRC64.checksum(stateBytes))
            guard actual == listed.lowercased() else {
                throw SnapshotError(.checksumMismatch, "\(stateEntry.name): the manifest lists CRC-64 \(listed), the file has \(actual)")
            }
        }
        try SnapshotReader.checkConsistency(state: state, machine: manifest.machine)

        let memoryEntry = manifest.file(.memory)!
        let memoryURL = directory.appendingPathComponent(memoryEntry.name)
        let memorySize = try SnapshotFileIO.size(of: memoryURL)
        guard memorySize == manifest.machine.memorySize else {
            throw SnapshotError(.sizeMismatch, "\(memoryEntry.name) is \(memorySize) bytes, the memory map holds "
                + "\(manifest.machine.memorySize)")
        }
        if verifyMemoryChecksum, let listed = memoryEntry.crc64 {
            let actual = CRC64.hex(try SnapshotFileIO.checksum(of: memoryURL))
            guard actual == listed.lowercased() else {
                throw SnapshotError(.checksumMismatch, "\(memoryEntry.name): the manifest lists CRC-64 \(listed), the file has \(actual)")
            }
        }
        return Snapshot(manifest: manifest, state: state, memoryFileURL: memoryURL)
    }

    /// The state must describe the configured machine: one vCPU state per vCPU,
    /// one virtio state per virtio device at the same address.
    static func checkConsistency(state: MachineState, machine: SnapshotMachineConfig) throws {
        guard state.vcpus.count == machine.cpuCount else {
            throw SnapshotError(.sizeMismatch, "the state holds \(state.vcpus.count) vCPUs, the config has \(machine.cpuCount)")
        }
        let virtio = machine.devices.filter { $0.kind.hasPrefix("virtio-") }
        guard virtio.count == state.devices.virtio.count else {
            throw SnapshotError(.sizeMismatch, "the state holds \(state.devices.virtio.count) virtio devices, "
                + "the config has \(virtio.count)")
        }
        for (i, (config, saved)) in zip(virtio, state.devices.virtio).enumerated() where config.address != saved.mmioBase {
            throw SnapshotError(.invalidState, "virtio device \(i) is at 0x\(String(saved.mmioBase, radix: 16)) in the state, "
                + "at 0x\(String(config.address, radix: 16)) in the config")
        }
    }
}
