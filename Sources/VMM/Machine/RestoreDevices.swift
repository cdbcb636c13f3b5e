import FoundationEssentials
import Network
import Storage
import Virtio
import VMState
#if canImport(Glibc)
import Glibc
#endif

/// Host-side resources a restore takes from its own command line rather than
/// from the snapshot, by device order: where each disk's new overlay goes, and
/// which TAP each network card opens.
public struct RestoreResources: Sendable {
    /// Overlay paths for the snapshot's disks, in order (vda, vdb, …); missing
    /// ones get the default (see `RestoreDevices.defaultOverlay`). For a
    /// read-only disk, the file to open instead of the recorded one.
    public var diskPaths: [String]
    /// TAP names for the network cards, in order; missing ones reopen the recorded TAP.
    public var taps: [String]

    public init(diskPaths: [String] = [], taps: [String] = []) {
        self.diskPaths = diskPaths
        self.taps = taps
    }
}

/// The virtio devices of a snapshot made ready to open in a new process: each
/// frozen disk gets a new qcow2 overlay (backed by the frozen copy, which is
/// never written), referenced files are checked unchanged, TAP names chosen.
struct RestoreDevices {
    var disks: [BlockDeviceConfig] = []
    var networks: [NetDeviceConfig] = []
    /// Overlays this restore created: removed if the restore fails before running.
    var createdOverlays: [String] = []

    /// - Parameters:
    ///   - directory: the snapshot directory (absolute or relative to the working directory).
    ///   - log: says where each new overlay is.
    init(snapshot: Snapshot, directory: URL, resources: RestoreResources, log: (String) -> Void) throws {
        let recorded = snapshot.manifest.machine.devices.filter { $0.kind.hasPrefix("virtio-") }
        let states = snapshot.state.devices.virtio
        guard recorded.count == states.count else {
            throw SnapshotError(.invalidState, "the manifest lists \(recorded.count) virtio device(s), the state holds \(states.count)")
        }
        let diskCount = recorded.filter { $0.kind == "virtio-block" }.count
        let netCount = recorded.filter { $0.kind == "virtio-net" }.count
        guard resources.diskPaths.count <= diskCount else {
            throw ConfigError("\(resources.diskPaths.count) --disk given, the snapshot has \(diskCount) disk(s)")
        }
        guard resources.taps.count <= netCount else {
            throw ConfigError("\(resources.taps.count) --net given, the snapshot has \(netCount) network card(s)")
        }
        // Disks come before network cards in the slots, as a boot places them.
        guard recorded.map(\.kind) == Array(repeating: "virtio-block", count: diskCount)
                + Array(repeating: "virtio-net", count: netCount) else {
            throw SnapshotError(.malformed, "the snapshot's virtio devices are not disks followed by network cards: "
                + recorded.map(\.kind).joined(separator: ", ").prefix(200))
        }
        do {
            for (i, (d, state)) in zip(recorded, states).enumerated() where d.kind == "virtio-block" {
                try addDisk(i, d, state, directory: directory, override: resources.diskPaths[safe: i], log: log)
            }
            for (n, d) in recorded.filter({ $0.kind == "virtio-net" }).enumerated() {
                guard let tap = resources.taps[safe: n] ?? d.tap, let text = d.mac,
                      let mac = try? MACAddress(parsing: text) else {
                    throw SnapshotError(.malformed, "network card \(n) has no TAP name or no valid MAC in the manifest")
                }
                networks.append(NetDeviceConfig(tap: tap, mac: mac))
            }
        } catch {
            removeOverlays()
            throw error
        }
    }

    func removeOverlays() {
        for path in createdOverlays { unlink(path) }
    }

    private mutating func addDisk(_ index: Int, _ d: SnapshotMachineConfig.DeviceDescription, _ state: VirtioDeviceState,
                                  directory: URL, override: String?, log: (String) -> Void) throws {
        guard case let .block(capacitySectors, readOnly) = state.backend, readOnly == (d.readOnly ?? false) else {
            throw SnapshotError(.invalidState, "disk \(index): the manifest and the device state disagree")
        }
        let format = d.format.flatMap(DiskFormat.init(rawValue:))
        guard let format else { throw SnapshotError(.malformed, "disk \(index): no format recorded") }
        if readOnly {
            guard let path = override ?? d.path else { throw SnapshotError(.malformed, "disk \(index): no path recorded") }
            if override == nil { try Self.checkUnchanged(d.referencedFiles ?? [], disk: index) }
            disks.append(BlockDeviceConfig(path: path, readOnly: true, serial: d.serial, format: format))
            return
        }
        guard let name = d.frozenFile, let size = d.frozenSize else {
            throw SnapshotError(.malformed, "disk \(index) is writable but the snapshot holds no copy of it")
        }
        let frozen = Machine.absolutePath(directory.appendingPathComponent(name).path)
        var st = stat()
        guard stat(frozen, &st) == 0 else {
            throw SnapshotError(.missingFile, "disk \(index): the snapshot's copy \(frozen) is missing: \(String(cString: strerror(errno)))")
        }
        guard UInt64(st.st_size) == size else {
            throw SnapshotError(.sizeMismatch, "disk \(index): the snapshot's copy \(frozen) is \(st.st_size) bytes, "
                + "the manifest says \(size)")
        }
        try Self.checkUnchanged(d.referencedFiles ?? [], disk: index)
        // The copy must read through the files the manifest vouches for, no others.
        let info = try ImageInfo.read(path: frozen)
        guard info.format == format, info.backingFile == d.referencedFiles?.first?.path else {
            throw SnapshotError(.invalidState, "disk \(index): the snapshot's copy \(frozen) is \(info.format.rawValue) "
                + "backed by \(info.backingFile ?? "nothing"), the manifest says \(format.rawValue) backed by "
                + "\(d.referencedFiles?.first?.path ?? "nothing")")
        }
        let overlay = override ?? Self.defaultOverlay(directory: directory, disk: index)
        guard !FileManager.default.fileExists(atPath: overlay) else {
            throw ConfigError("disk \(index): overlay \(overlay) exists; a restore writes a new one (give another path)")
        }
        var options = Qcow2Image.CreateOptions()
        options.backingFile = frozen
        options.backingFormat = format
        guard capacitySectors <= UInt64.max / 512 else { throw SnapshotError(.invalidState, "disk \(index): capacity overflows") }
        try Qcow2Image.create(path: overlay, virtualSize: capacitySectors * 512, options: options)
        createdOverlays.append(overlay)
        if override == nil { log("restore: disk \(index) writes to the new overlay \(overlay)") }
        disks.append(BlockDeviceConfig(path: overlay, readOnly: false, serial: d.serial, format: .qcow2))
    }

    /// Next to the snapshot directory, named after it, this process and the
    /// disk: never inside the snapshot, and two restores (two processes) never
    /// pick the same one; a leftover from a process with the same pid gets a suffix.
    static func defaultOverlay(directory: URL, disk: Int) -> String {
        let dir = directory.standardizedFileURL
        let base = dir.deletingLastPathComponent().appendingPathComponent(dir.lastPathComponent).path
            + "-restore-\(getpid())-disk\(disk)"
        var candidate = base + ".qcow2"
        var n = 1
        while FileManager.default.fileExists(atPath: candidate) {
            candidate = base + "-\(n).qcow2"
            n += 1
        }
        return candidate
    }

    /// A referenced file (backing image, read-only disk) must be as it was.
    static func checkUnchanged(_ files: [SnapshotMachineConfig.FileIdentity], disk: Int) throws {
        for f in files {
            let now: SnapshotMachineConfig.FileIdentity
            do {
                now = try Machine.identity(of: f.path)
            } catch {
                throw SnapshotError(.missingFile, "disk \(disk): \(f.path), which the snapshot references, is gone")
            }
            guard now.size == f.size, now.modifiedNanoseconds == f.modifiedNanoseconds else {
                throw SnapshotError(.invalidState, "disk \(disk): \(f.path) changed since the snapshot (size \(f.size) → "
                    + "\(now.size), modification time \(f.modifiedNanoseconds) → \(now.modifiedNanoseconds) ns); "
                    + "the snapshot's disk reads through it, so it must stay as it was")
            }
        }
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
