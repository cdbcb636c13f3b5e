import FoundationEssentials
import Storage
import Virtio
import VMState
#if canImport(Glibc)
import Glibc
#endif

/// The virtio devices in a snapshot: their transport and queue state (as
/// values, so migration can send them instead of writing a file), and their
/// backends — each disk's top layer frozen into the snapshot directory.
extension Machine {
    /// The state of every device (serial port, virtio transports and queues).
    /// Call with the VM paused: vCPUs parked, devices drained, event loop parked.
    public func saveDeviceStates() throws -> DeviceStates {
        var virtioStates: [VirtioDeviceState] = []
        for (transport, resource) in zip(virtio.transports, virtio.resources) {
            virtioStates.append(try VirtioDeviceState(transport: transport, mmioBase: resource.base, gsi: resource.irq))
        }
        return DeviceStates(serial: serial.snapshot(), virtio: virtioStates)
    }

    /// Applies device state to a freshly built machine whose devices are the
    /// snapshot's, in the same slots (no vCPU has run; after the KVM state).
    public func restoreDeviceStates(_ states: DeviceStates) throws {
        try states.validate()
        guard states.virtio.count == virtio.transports.count else {
            throw SnapshotError(.invalidState, "the state holds \(states.virtio.count) virtio device(s), the machine "
                + "config \(virtio.transports.count)")
        }
        for (saved, (transport, resource)) in zip(states.virtio, zip(virtio.transports, virtio.resources)) {
            guard saved.mmioBase == resource.base, saved.gsi == resource.irq else {
                throw SnapshotError(.invalidState, "virtio device state for 0x\(String(saved.mmioBase, radix: 16)) "
                    + "GSI \(saved.gsi) is in the slot at 0x\(String(resource.base, radix: 16)) GSI \(resource.irq)")
            }
            try saved.restore(into: transport)
        }
        if let saved = states.serial { serial.restore(saved) }
    }

    /// Describes the virtio devices for the manifest, freezing each writable
    /// disk's top layer into `directory` (see docs/snapshot.md, "Disks"): the
    /// image is flushed first, so the copy holds every completed write and
    /// consistent qcow2 metadata. Read-only disks and backing files are
    /// referenced by path and identity, not copied.
    func freezeVirtioDevices(into directory: URL) throws -> (devices: [SnapshotMachineConfig.DeviceDescription], bytes: UInt64) {
        var devices: [SnapshotMachineConfig.DeviceDescription] = []
        var copied: UInt64 = 0
        for (index, (transport, resource)) in zip(virtio.transports, virtio.resources).enumerated() {
            var d = SnapshotMachineConfig.DeviceDescription(kind: "", address: resource.base, gsi: resource.irq)
            switch transport.device {
            case let block as VirtioBlock:
                try transport.flushDevice()
                let image = block.image
                d.kind = "virtio-block"
                d.path = Self.absolutePath(image.path)
                d.readOnly = image.isReadOnly
                d.serial = block.serial
                d.format = image.format.rawValue
                var layers = Self.layers(of: image)
                if !image.isReadOnly {
                    let name = "disk\(index).\(image.format.rawValue)"
                    let frozen = directory.appendingPathComponent(name).path
                    let result = try SparseFileCopy.copy(from: image.path, to: frozen)
                    copied += result.bytesCopied
                    layers.removeFirst()
                    if let below = layers.first {
                        // The copy's backing name must resolve from the snapshot directory.
                        try Qcow2Image.setBackingFileName(path: frozen, to: below)
                    }
                    d.frozenFile = name
                    d.frozenSize = result.size
                    log.info("snapshot: disk \(index) top layer \(image.path) frozen as \(name) (\(result.reflinked ? "reflink" : "\(result.bytesCopied >> 10) KiB copied"))")
                }
                d.referencedFiles = try layers.map(Self.identity(of:))
            case let net as VirtioNet:
                d.kind = "virtio-net"
                d.tap = net.tap.name
                d.mac = net.mac.description
            default:
                throw SnapshotRefused(message: "cannot snapshot virtio device type \(transport.device.deviceType)")
            }
            devices.append(d)
        }
        return (devices, copied)
    }

    /// The image's files, top first, as absolute paths (a relative backing name
    /// was resolved against the working directory of this process).
    static func layers(of image: DiskImage) -> [String] {
        var paths: [String] = []
        var current: DiskImage? = image
        while let c = current {
            paths.append(absolutePath(c.path))
            current = (c as? Qcow2Image)?.backing
        }
        return paths
    }

    static func absolutePath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return URL(fileURLWithPath: path).standardizedFileURL.path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Size and modification time: what a restore compares to refuse a changed file.
    static func identity(of path: String) throws -> SnapshotMachineConfig.FileIdentity {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw SnapshotError(.io, "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        return .init(path: path, size: UInt64(st.st_size),
                     modifiedNanoseconds: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }
}
