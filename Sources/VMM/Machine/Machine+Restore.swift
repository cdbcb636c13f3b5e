import FoundationEssentials
import GuestMemory
import KVM
import Logging
import Posix
import VMState
import X86

extension Machine {
    /// Rebuilds a snapshotted machine in this process, ready for `run()`:
    /// reads and checks the snapshot (manifest, state, sizes — nothing of the
    /// memory file but its size), builds the VM from the recorded config with RAM
    /// mapped copy-on-write from the memory file (so the time taken does not grow
    /// with RAM), then restores vCPUs and platform (before any vCPU thread
    /// exists), then the devices, then tells each vCPU's kvmclock the guest was
    /// stopped. Any problem is one error; no vCPU has run.
    /// - Parameters:
    ///   - directory: a snapshot written by `snapshot(to:)`.
    ///   - clock: `.frozen` (the guest sees no time pass across the snapshot) or
    ///     `.advancedByElapsedRealTime`; see docs/snapshot.md.
    ///   - resources: overlay paths and TAP names by device order (defaults: see `RestoreDevices`).
    public convenience init(restoringFrom directory: String, clock: ClockRestore = .frozen,
                            resources: RestoreResources = RestoreResources(),
                            output: @escaping @Sendable (UInt8) -> Void = Machine.writeToStdout) throws {
        let start = ContinuousClock.now
        let url = URL(fileURLWithPath: directory)
        let snapshot = try SnapshotReader(directory: url).read()
        let recorded = snapshot.manifest.machine
        let ranges = try Self.checkMemoryMap(recorded)
        let devices = try RestoreDevices(snapshot: snapshot, directory: url, resources: resources) {
            StandardError.write("skiff: " + $0 + "\n")
        }
        let config = MachineConfig(kernelPath: recorded.kernelPath, initrdPath: recorded.initrdPath,
                                   commandLine: recorded.commandLine, cpuCount: recorded.cpuCount,
                                   memorySize: recorded.memorySize, disks: devices.disks, networks: devices.networks)
        do {
            let memory = try GuestMemory(mappingPrivately: snapshot.memoryFileURL.path, ranges: ranges)
            let mapped = ContinuousClock.now
            try self.init(building: config, restoredMemory: memory, output: output)
            restoreStartedAt = start
            // A guest given a CPU feature this host lacks would fault long after a
            // "successful" restore: refuse it now, before any vCPU runs. The
            // reference is what this host gives a fresh vCPU (KVM_GET_CPUID2 after
            // set-up), not KVM_GET_SUPPORTED_CPUID: under kvm_pvm the guest sees
            // the host's own CPUID, far more than the supported table lists.
            if let fresh = vcpuThreads.first?.vcpu {
                try CPUCompatibility.check(snapshot.state, supported: CPUCompatibility.entries(try fresh.cpuid()))
            }
            let built = ContinuousClock.now
            let applied = try restore(snapshot.state, clock: clock)
            let done = ContinuousClock.now
            log.info("restored from \(directory) in \(Self.milliseconds(done - start)) (clock \(applied.rawValue)): snapshot read and RAM mapped in \(Self.milliseconds(mapped - start)), VM built in \(Self.milliseconds(built - mapped)), state applied in \(Self.milliseconds(done - built))")
        } catch {
            // Nothing ran: leave no overlay behind for a restore that did not happen.
            devices.removeOverlays()
            throw error
        }
    }

    /// The recorded memory map must be the one this build lays out for that RAM
    /// size (the e820 map the guest booted with), file offsets back to back.
    static func checkMemoryMap(_ recorded: SnapshotMachineConfig) throws -> [(start: GuestAddress, size: UInt64)] {
        let expected = MemoryMap.ramRanges(size: recorded.memorySize)
        var offset: UInt64 = 0
        var same = expected.count == recorded.memoryMap.count
        for (e, r) in zip(expected, recorded.memoryMap) {
            same = same && e.start == r.guestAddress && e.size == r.size && r.fileOffset == offset
            offset &+= e.size
        }
        guard same else {
            throw SnapshotError(.invalidState, "the snapshot's memory map does not match the layout of a "
                + "\(recorded.memorySize >> 20) MiB machine")
        }
        return expected.map { (GuestAddress($0.start), $0.size) }
    }

    /// Applies saved state to the freshly built machine (no vCPU has run).
    func restore(_ state: MachineState, clock: ClockRestore) throws -> ClockRestore {
        try lock.withLock { try lifecycle.move(to: .receiving) }
        let vcpus = vcpuThreads.map(\.vcpu)
        let applied = try vm.restoreKVMState(vcpus: vcpus, states: state.vcpus, platform: state.platform, clock: clock)
        if applied != clock { log.warning("restore: this host's KVM cannot advance the clock; the guest clock is frozen") }
        try restoreDeviceStates(state.devices)
        // The guest was stopped for a while: kvmclock-aware guests must not take
        // the gap for a lockup.
        for v in vcpus { _ = try? v.notifyHostPause() }
        return applied
    }
}
