import FoundationEssentials
import GuestMemory
import KVM
import Logging
import VMState
import X86

/// Why a snapshot was not taken, before anything was paused or written.
public struct SnapshotRefused: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}

extension Machine {
    /// The version recorded in snapshot manifests (for people; never checked).
    public static let skiffVersion = "0.1.0-dev"

    /// What a snapshot measured.
    public struct SnapshotTiming: Sendable {
        /// Request → vCPUs parked and devices quiet (zero for an already paused VM).
        public var pause: Duration
        /// vCPU, platform and device state read and `state.bin` + manifest written.
        public var state: Duration
        /// The sparse memory file written and fsynced.
        public var memory: Duration
        /// Request → the VM running again (or still paused).
        public var total: Duration
        /// Bytes of guest RAM actually written (the non-zero pages).
        public var memoryBytesWritten: UInt64
        /// The disks' top layers copied (flush included).
        public var disks: Duration = .zero
        /// Bytes copied for them (0 for reflinks and read-only disks).
        public var diskBytesCopied: UInt64 = 0
    }

    /// The snapshot being written, or the last one; nil before the first.
    public var snapshotProgress: SnapshotProgress? { lock.withLock { snapshotProgressStorage } }

    /// Writes the whole machine to `directory` (created; must not exist or be
    /// empty): vCPUs, interrupt controllers, PIT, kvmclock, serial port, the
    /// machine config, and guest RAM as a sparse file. A running VM is paused
    /// for the snapshot and resumed after it; a paused one stays paused.
    ///
    /// Writable disks have their top layer frozen into `directory` (a copy that
    /// costs the layer's allocated data), read-only disks and backing files are
    /// referenced; network cards are recorded by TAP name and MAC.
    @discardableResult
    public func snapshot(to directory: String) throws -> SnapshotTiming {
        let start = ContinuousClock.now
        let wasRunning: Bool
        switch runState {
        case .running: wasRunning = true
        case .paused: wasRunning = false
        case let other: throw LifecycleError(from: other, to: .snapshotting)
        }
        let progress = SnapshotProgress(memoryBytes: memory.totalSize)
        lock.withLock { snapshotProgressStorage = progress }
        let pauseTime: Duration
        do {
            pauseTime = wasRunning ? try pause().total : .zero
        } catch {
            progress.enter(.failed)
            throw error
        }

        var timing = SnapshotTiming(pause: pauseTime, state: .zero, memory: .zero, total: .zero, memoryBytesWritten: 0)
        var failure: Error?
        do {
            try control.withLock {
                // Someone may have resumed it between pause() and here: never save a running VM.
                try lock.withLock {
                    guard lifecycle.state == .paused else { throw LifecycleError(from: lifecycle.state, to: .snapshotting) }
                    try lifecycle.move(to: .snapshotting)
                }
                defer { lock.withLock { _ = try? lifecycle.move(to: .paused) } }
                try write(to: URL(fileURLWithPath: directory), timing: &timing, progress: progress)
            }
        } catch {
            failure = error
        }
        progress.enter(failure == nil ? .done : .failed)
        // Resume even after a failure: a failed snapshot must not leave the guest stopped.
        if wasRunning, runState == .paused { try resume() }
        if let failure { throw failure }
        timing.total = ContinuousClock.now - start
        let summary = "snapshot to \(directory): paused in \(Self.milliseconds(timing.pause)), state in "
            + "\(Self.milliseconds(timing.state)), memory (\(timing.memoryBytesWritten >> 10) KiB written) in "
            + "\(Self.milliseconds(timing.memory)), disks (\(timing.diskBytesCopied >> 10) KiB copied) in "
            + "\(Self.milliseconds(timing.disks)), total \(Self.milliseconds(timing.total))"
        log.info("\(summary)")
        return timing
    }

    /// Saves everything into `url`; the VM is paused and stays so. On failure
    /// what was written is removed (the directory too, if this created it), so
    /// no half snapshot is left to be mistaken for one.
    private func write(to url: URL, timing: inout SnapshotTiming, progress: SnapshotProgress) throws {
        let existed = FileManager.default.fileExists(atPath: url.path)
        let writer = try SnapshotWriter(directory: url)
        do {
            try write(writer, timing: &timing, progress: progress)
        } catch {
            if existed {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? [] {
                    try? FileManager.default.removeItem(at: url.appendingPathComponent(name))
                }
            } else {
                try? FileManager.default.removeItem(at: url)
            }
            throw error
        }
    }

    private func write(_ writer: SnapshotWriter, timing: inout SnapshotTiming, progress: SnapshotProgress) throws {
        // Disks first: their flush is the last thing that may touch guest memory
        // (a completion the pause's drain left would land in RAM before it is saved).
        progress.enter(.disks)
        let disksStart = ContinuousClock.now
        let frozen = try freezeVirtioDevices(into: writer.directory)
        timing.diskBytesCopied = frozen.bytes
        progress.disks(copied: frozen.bytes)
        let memoryStart = ContinuousClock.now
        timing.disks = memoryStart - disksStart

        progress.enter(.memory)
        timing.memoryBytesWritten = try SparseMemoryFile.write(memory, to: writer.memoryFileURL, progress: progress)
        let stateStart = ContinuousClock.now
        timing.memory = stateStart - memoryStart
        progress.enter(.state)

        let kvmState = try vm.saveKVMState(vcpus: vcpuThreads.map(\.vcpu), msrIndices: try kvm.msrIndexList())
        let state = MachineState(vcpus: kvmState.vcpus, platform: kvmState.platform, devices: try saveDeviceStates())
        // Without a memory CRC: reading all of RAM again doubles the time for
        // little; the state file, which is small, is checksummed.
        try writer.finish(state: state, machine: snapshotConfig(virtio: frozen.devices), skiffVersion: Self.skiffVersion,
                          checksumMemory: false)
        timing.state = ContinuousClock.now - stateStart
    }

    /// The machine config as the manifest records it.
    func snapshotConfig(virtio: [SnapshotMachineConfig.DeviceDescription]) -> SnapshotMachineConfig {
        typealias Device = SnapshotMachineConfig.DeviceDescription
        let devices = [
            Device(kind: "serial", address: UInt64(Layout.serialPort), gsi: Layout.serialIRQ),
            Device(kind: "i8042", address: UInt64(Layout.i8042DataPort)),
            Device(kind: "acpi-sleep", address: UInt64(Layout.acpiSleepControlPort)),
        ] + virtio
        return SnapshotMachineConfig(
            kernelPath: config.kernelPath, initrdPath: config.initrdPath, commandLine: config.commandLine,
            cpuCount: config.cpuCount, memorySize: config.memorySize,
            memoryMap: memory.regions.map { .init(guestAddress: $0.start.rawValue, size: $0.size, fileOffset: $0.fileOffset) },
            devices: devices)
    }
}
