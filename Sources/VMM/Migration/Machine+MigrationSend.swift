import KVM
import Migration
import Posix
import Storage
import Virtio
import VMState
#if canImport(Glibc)
import Glibc
#endif

extension Machine {
    /// Sends this running VM to a destination (`skiff run --incoming`) over
    /// `stream`, pre-copy: config (checked by the destination before any memory),
    /// all of RAM, then the pages dirtied meanwhile, round after round, until the
    /// rest fits in `options.downtimeLimit` at the measured rate (throttling the
    /// vCPUs if the guest dirties faster than that); then pause, the last pages
    /// and the machine state, and commit.
    ///
    /// On success the destination has confirmed that the VM runs there, and this
    /// machine stops with `.migrated`. On any failure before that, the VM runs on
    /// here as before (resumed if it was paused for the switch-over) and the
    /// error says why; the destination is told to abandon when it can still hear.
    public func sendMigration(over stream: ByteStream, options: MigrationOptions = MigrationOptions(),
                              progress: @escaping (MigrationProgress) -> Void = { _ in }) throws -> MigrationSummary {
        let start = ContinuousClock.now
        let wasRunning: Bool = try lock.withLock {
            let state = lifecycle.state
            try lifecycle.move(to: .migrating)
            return state == .running
        }
        let tracker = DirtyPageTracker(vm: vm, memory: memory)
        let throttle = VCPUThrottle(gate: gate, kick: { [vcpuThreads] in for t in vcpuThreads { t.kick() } })
        var paused = false
        var released: [DiskImage] = []
        var disks: DiskSender?
        do {
            let summary = try precopy(stream, options: options, tracker: tracker, throttle: throttle, start: start,
                                      wasRunning: wasRunning, progress: progress, paused: &paused, released: &released,
                                      disks: &disks)
            disks?.stop()
            stop(.migrated)
            log.info("\(summary.text)")
            return summary
        } catch {
            throttle.stop()
            tracker.stop()
            disks?.stop()
            // Heard only before commit (after it the destination reads nothing more).
            try? MigrationFrame.write(.abandon, payload: MigrationFrame.text("the source gave up: \(error)"), to: stream)
            try? stream.flush()
            stream.close()
            // The VM stays here: back to how it was before the migration, disks locked again first.
            retakeDiskLocks(released)
            if paused && wasRunning {
                try? resume()
            } else {
                lock.withLock { _ = try? lifecycle.move(to: wasRunning ? .running : .paused) }
            }
            log.error("migration failed, the VM runs on here: \(error)")
            throw error
        }
    }

    private func precopy(_ stream: ByteStream, options: MigrationOptions, tracker: DirtyPageTracker,
                         throttle: VCPUThrottle, start: ContinuousClock.Instant, wasRunning: Bool,
                         progress: (MigrationProgress) -> Void, paused: inout Bool,
                         released: inout [DiskImage], disks senderOut: inout DiskSender?) throws
        -> MigrationSummary {
        // Handshake: the destination checks version and config before any memory.
        try MigrationFrame.write(.start, payload: MigrationVersion.startPayload(), to: stream)
        try stream.flush()
        try expect(.accepted, from: stream, after: "start")
        try MigrationFrame.write(.config, payload: try migrationConfig().encoded(), to: stream)
        try stream.flush()
        // A destination without shared storage for some disk answers with its plan
        // and checks their backing chains before anything is transferred.
        let disks = try negotiateDisks(stream)
        senderOut = disks

        try tracker.start(log: log)
        try disks.start()
        var sender = MemorySender(memory: memory, stream: stream)
        var report = MigrationProgress()
        var iteration = 0
        var sendTime: Duration = .zero
        var previousDirty = UInt64.max
        var converged = false
        var maxThrottle = 0

        func round(_ body: (inout MemorySender) throws -> Void) throws {
            let t0 = ContinuousClock.now
            try body(&sender)
            try disks.sendPending(to: stream)
            try MigrationFrame.write(.iterationEnd, payload: withUnsafeBytes(of: UInt64(iteration).littleEndian, Array.init),
                                     to: stream)
            try stream.flush()
            sendTime += ContinuousClock.now - t0
            iteration += 1
        }
        try round { try $0.sendAll() }

        var pending = try tracker.harvest(final: false)
        disks.harvest()
        while true {
            let dirty = UInt64(DirtyPageTracker.count(pending)) * 4096 + disks.pendingBytes
            // Below 4 MiB sent the rate is mostly start-up noise: assume 100 MiB/s, a floor.
            let seconds = Double(sendTime.components.seconds) + Double(sendTime.components.attoseconds) / 1e18
            let sent = sender.bytesSent + disks.bytesSent
            let rate = sent >= 4 << 20 && seconds > 0 ? Double(sent) / seconds : 100 * 1048576
            let expected = Duration.nanoseconds(Int64(Double(dirty) / rate * 1e9))
            report = MigrationProgress()
            report.iteration = iteration
            report.bytesSent = sent
            report.rate = rate
            report.dirtyBytes = dirty
            report.expectedDowntime = expected
            report.throttlePercent = throttle.share
            progress(report)
            if expected <= options.downtimeLimit { converged = true; break }
            if iteration >= options.maxIterations || ContinuousClock.now - start >= options.maxPrecopyTime { break }
            // Not shrinking by half a round: the guest dirties about as fast as the link sends.
            if options.autoConverge, iteration >= 2, dirty * 2 > previousDirty {
                throttle.raise()
                maxThrottle = throttle.share
            }
            previousDirty = dirty
            try round { try $0.send(bitmap: pending) }
            pending = try tracker.harvest(final: false)
            disks.harvest()
        }

        // Switch-over: the guest stops here and the downtime starts. What can be
        // had before (the MSR list) is fetched before.
        let msrIndices = try kvm.msrIndexList()
        throttle.stop()
        let pauseStart = ContinuousClock.now
        if wasRunning {
            try pause()
        } else {
            lock.withLock { _ = try? lifecycle.move(to: .paused) }
        }
        paused = true
        // The guest's last write is done (pause drained the queues): flushed, the
        // images' locks go to the destination, which opens them only after this.
        released = try handOverDisks(except: disks)
        let pausedAt = ContinuousClock.now
        let last = try tracker.harvest(final: true)
        for i in pending.indices { pending[i] |= last[i] }
        disks.harvest()
        let finalDiskBytes = disks.pendingBytes
        let finalPages = DirtyPageTracker.count(pending)
        try round { try $0.send(bitmap: pending) }
        let memorySent = ContinuousClock.now
        // Logging stays on: turning it off costs a memslot update inside the downtime,
        // and a source that migrated is torn down anyway (a failure turns it off).
        let kvmState = try vm.saveKVMState(vcpus: vcpuThreads.map(\.vcpu), msrIndices: msrIndices)
        // Paused: the event loop is parked, so no frame reaches guest RAM past this point.
        let state = MachineState(vcpus: kvmState.vcpus, platform: kvmState.platform, devices: try saveDeviceStates())
        let stateRead = ContinuousClock.now
        let stateBytes = try state.encodedStateFile()
        let stateSaved = ContinuousClock.now
        try MigrationFrame.write(.state, payload: stateBytes, to: stream)
        try stream.flush()
        try expect(.ready, from: stream, after: "state")
        let ready = ContinuousClock.now
        // From here the destination may run the guest; it says so before we stop.
        try MigrationFrame.write(.commit, payload: [wasRunning ? 1 : 0], to: stream)
        try stream.flush()
        try expect(.running, from: stream, after: "commit")
        let end = ContinuousClock.now
        let diskNote = disks.isEmpty ? "" : " and \(finalDiskBytes >> 10) KiB of disk clusters"
        let breakdown = "migration switch-over: paused in \(Self.milliseconds(pausedAt - pauseStart)), last \(finalPages) page(s)\(diskNote) "
            + "sent in \(Self.milliseconds(memorySent - pausedAt)), state read in \(Self.milliseconds(stateRead - memorySent)) and "
            + "encoded (\(stateBytes.count) bytes) in \(Self.milliseconds(stateSaved - stateRead)), destination ready after \(Self.milliseconds(ready - stateSaved)), "
            + "running after \(Self.milliseconds(end - ready)); dirty log: \(tracker.manualProtect ? "KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG (manual protect)" : "KVM_GET_DIRTY_LOG")"
        log.info("\(breakdown)")
        if !disks.isEmpty { log.info("migration without shared storage: \(disks.summary), \(disks.bytesSent) bytes") }
        return MigrationSummary(total: end - start, downtime: end - pauseStart,
                                bytesSent: sender.bytesSent + disks.bytesSent + UInt64(stateBytes.count), iterations: iteration,
                                converged: converged, throttlePercent: maxThrottle,
                                dirtyLog: tracker.manualProtect ? "KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG" : "KVM_GET_DIRTY_LOG")
    }

    /// The destination's answer to `config`: `accepted` (every disk on shared
    /// storage), or a disk plan, then the copied disks' description and its
    /// `accepted` once it has checked their backing chains and made overlays.
    private func negotiateDisks(_ stream: ByteStream) throws -> DiskSender {
        let transports = virtio.transports
        let header = try expect([.accepted, .diskPlan], from: stream, after: "config")
        guard header.kind == .diskPlan else {
            return try DiskSender(plan: MigrationDiskPlan(copied: transports.filter { $0.device is VirtioBlock }.map { _ in false }),
                                  transports: transports)
        }
        let disks = transports.filter { $0.device is VirtioBlock }.count
        let plan = try MigrationDiskPlan.parse(try MigrationFrame.readPayload(header, from: stream), disks: disks)
        let sender = try DiskSender(plan: plan, transports: transports)
        try MigrationFrame.write(.disks, payload: try sender.describe().encoded(), to: stream)
        try stream.flush()
        try expect(.accepted, from: stream, after: "disks")
        return sender
    }

    /// Reads the destination's answer: `kind`, or its refusal as an error.
    private func expect(_ kind: MigrationFrame.Kind, from stream: ByteStream, after step: String) throws {
        let header = try expect([kind], from: stream, after: step)
        _ = try MigrationFrame.readPayload(header, from: stream)
    }

    /// Reads the header of the destination's answer, one of `kinds` (its
    /// payload is the caller's to read), or its refusal as an error.
    @discardableResult
    private func expect(_ kinds: [MigrationFrame.Kind], from stream: ByteStream, after step: String) throws -> MigrationFrame.Header {
        let header: MigrationFrame.Header
        do {
            header = try MigrationFrame.readHeader(from: stream)
        } catch ByteStreamError.endOfStream {
            throw MigrationError(.connection, "the destination closed the connection after \(step)")
        }
        if header.kind == .refused {
            let why = MigrationFrame.decodeText(try MigrationFrame.readPayload(header, from: stream))
            throw MigrationError(.refused, "the destination refused: \(why)")
        }
        guard kinds.contains(header.kind) else {
            throw MigrationError(.malformed, "the destination answered \(header.kind) to \(step), expected "
                + kinds.map { "\($0)" }.joined(separator: " or "))
        }
        return header
    }

    /// The virtio devices as the destination rebuilds them: slot; a disk's
    /// image path (the same file must be there: shared storage), format and
    /// serial; a network card's TAP name and MAC.
    func migratingDevices() -> [SnapshotMachineConfig.DeviceDescription] {
        zip(virtio.transports, virtio.resources).compactMap { transport, resource in
            typealias Device = SnapshotMachineConfig.DeviceDescription
            switch transport.device {
            case let net as VirtioNet:
                return Device(kind: "virtio-net", address: resource.base, gsi: resource.irq,
                              tap: net.tap.name, mac: net.mac.description)
            case let block as VirtioBlock:
                var d = Device(kind: "virtio-block", address: resource.base, gsi: resource.irq,
                               path: Self.absolutePath(block.image.path), readOnly: block.image.isReadOnly,
                               serial: block.serial)
                d.format = block.image.format.rawValue
                return d
            default:
                return nil
            }
        }
    }

    /// Flushes every disk on shared storage and releases the lock of each
    /// writable one (paused VM); the disks `copied` sends keep theirs.
    /// On failure the locks already released are taken back.
    private func handOverDisks(except copied: DiskSender) throws -> [DiskImage] {
        var released: [DiskImage] = []
        do {
            for transport in virtio.transports {
                guard let block = transport.device as? VirtioBlock else { continue }
                // A disk whose top layer is sent stays this VM's: the destination writes its own overlay.
                if copied.sends(block) { continue }
                try transport.flushDevice()
                guard !block.image.isReadOnly else { continue }
                try DiskImageOpener.releaseLock(of: block.image)
                released.append(block.image)
            }
        } catch {
            retakeDiskLocks(released)
            throw error
        }
        return released
    }

    /// The migration failed after the hand-over: the source writes again, so it
    /// locks again. A destination that opened the image lets go when it gives
    /// up, so a conflict is retried for a while; it is logged if it persists
    /// (the destination never runs the guest without commit, so no two writers).
    func retakeDiskLocks(_ images: [DiskImage]) {
        for image in images {
            var lastError: Error?
            for _ in 0..<40 {
                do { try DiskImageOpener.retakeLock(of: image); lastError = nil; break } catch { lastError = error }
                usleep(50_000)
            }
            if let lastError { log.error("migration failed: could not lock \(image.path) again: \(lastError)") }
        }
    }

    /// The config message: the machine and the host facts the guest depends on.
    func migrationConfig() throws -> MigrationConfig {
        let cpuid = try vcpuThreads[0].vcpu.cpuid().map { VCPUState.CPUIDEntry($0) }
        return MigrationConfig(skiffVersion: Self.skiffVersion, machine: snapshotConfig(virtio: migratingDevices()),
                               cpuVendor: MigrationHostCheck.vendor(of: try kvm.supportedCPUID()),
                               guestCPUID: cpuid, xsaveSize: vm.xsaveSize, tscKHz: try? vcpuThreads[0].vcpu.tscKHz())
    }
}
