import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// Writes a snapshot directory:
///
///     snap/
///       memory         guest RAM, written by the caller to `memoryFileURL`
///       state.bin      MachineState (see StateFile)
///       manifest.json  versions, machine config, files with sizes and CRC-64s
///
/// Use: `let w = try SnapshotWriter(directory:)`, write guest RAM to
/// `w.memoryFileURL` (the memory map's ranges back to back), then
/// `try w.finish(...)`. The manifest is written last (to a temporary name,
/// fsynced, renamed), so a directory without `manifest.json` is unfinished and
/// the reader refuses it.
public struct SnapshotWriter {
    public static let manifestName = "manifest.json"
    public static let stateName = "state.bin"
    public static let memoryName = "memory"

    public let directory: URL
    public var memoryFileURL: URL { directory.appendingPathComponent(SnapshotWriter.memoryName) }

    /// Creates `directory`; it may already exist only if empty (a snapshot is
    /// never written over another one).
    public init(directory: URL) throws {
        self.directory = directory
        let fm = FileManager.default
        var isDirectory = false
        if fm.fileExists(atPath: directory.path, isDirectory: &isDirectory) {
            guard isDirectory else { throw SnapshotError(.io, "\(directory.path) exists and is not a directory") }
            let contents = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
            guard contents.isEmpty else { throw SnapshotError(.io, "\(directory.path) is not empty; refusing to overwrite it") }
        } else {
            // mkdir(2) itself: FoundationEssentials' errors have no `localizedDescription`, and errno's text says more.
            guard mkdir(directory.path, 0o777) == 0 else {
                throw SnapshotError(.io, "cannot create \(directory.path): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Validates the state against the config, writes `state.bin`, checks the
    /// memory file's size against the memory map, and writes the manifest.
    /// - Parameters:
    ///   - checksumMemory: compute the memory file's CRC-64 (reads it all once;
    ///     skip it for very large guests if the time matters).
    ///   - createdAt: recorded in the manifest.
    @discardableResult
    public func finish(state: MachineState, machine: SnapshotMachineConfig, skiffVersion: String,
                       createdAt: Date = Date(), checksumMemory: Bool = true) throws -> SnapshotManifest {
        try state.validate()
        try machine.validate()
        try SnapshotReader.checkConsistency(state: state, machine: machine)

        let memorySize = try SnapshotFileIO.size(of: memoryFileURL)
        guard memorySize == machine.memorySize else {
            throw SnapshotError(.sizeMismatch, "the memory file is \(memorySize) bytes, the memory map holds \(machine.memorySize)")
        }
        let memoryCRC = checksumMemory ? CRC64.hex(try SnapshotFileIO.checksum(of: memoryFileURL)) : nil

        let stateBytes = try StateFile.encode(state)
        let stateURL = directory.appendingPathComponent(SnapshotWriter.stateName)
        try SnapshotFileIO.write(stateBytes, to: stateURL)

        let manifest = SnapshotManifest(
            skiffVersion: skiffVersion, createdAt: createdAt.formatted(Date.ISO8601FormatStyle()), machine: machine,
            files: [
                SnapshotFile(role: .state, name: SnapshotWriter.stateName, size: UInt64(stateBytes.count),
                             crc64: CRC64.hex(CRC64.checksum(stateBytes))),
                SnapshotFile(role: .memory, name: SnapshotWriter.memoryName, size: memorySize, crc64: memoryCRC),
            ])
        try manifest.validate()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let json: Data
        do { json = try encoder.encode(manifest) } catch { throw SnapshotError(.malformed, "cannot encode the manifest: \(error)") }

        let temporary = directory.appendingPathComponent(SnapshotWriter.manifestName + ".tmp")
        try SnapshotFileIO.write(Array(json) + [0x0A], to: temporary)
        try SnapshotFileIO.rename(temporary, to: directory.appendingPathComponent(SnapshotWriter.manifestName))
        try SnapshotFileIO.syncDirectory(directory)
        return manifest
    }
}
