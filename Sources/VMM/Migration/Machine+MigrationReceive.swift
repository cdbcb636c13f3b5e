import FoundationEssentials
import GuestMemory
import Migration
import Network
import Posix
import Storage
import Virtio
import VMState
import X86
#if canImport(Glibc)
import Glibc
#endif

extension Machine {
    /// What `receiveMigration` hands back: the machine, state applied and not
    /// yet run, and whether the source asked for it to run or stay paused.
    public struct IncomingVM {
        public let machine: Machine
        public let startPaused: Bool
        public let iterations: Int
        /// When `commit` was read, to log how long `running` took after it.
        public let committedAt: ContinuousClock.Instant
    }

    /// The destination side of a migration: checks the source's version and
    /// config (refusing clearly, before any memory is sent), builds the machine,
    /// fills its RAM from the memory runs, applies the state, answers `ready`
    /// and waits for `commit`. Every field of the stream is checked; anything
    /// wrong, an `abandon` or a cut connection is an error, and no vCPU has run.
    /// After this returns the caller runs the machine and sends `running`
    /// (`confirmRunning`).
    /// - Parameters:
    ///   - taps: TAP names for the network cards by device order (`--net`
    ///     given with `--incoming`); missing ones open the TAP the source used.
    ///   - disks: new overlay paths for the disks by device order (`--disk
    ///     path=` given with `--incoming`): such a disk is not on shared
    ///     storage, its top layer is received into that new file (see
    ///     docs/migration.md, "Disks without shared storage"); missing ones
    ///     open the recorded image (shared storage).
    public static func receiveMigration(over stream: ByteStream, taps: [String] = [], disks: [String] = [],
                                        output: @escaping @Sendable (UInt8) -> Void = Machine.writeToStdout) throws -> IncomingVM {
        var machine: Machine?
        let receiver = DiskReceiver()
        do {
            return try receive(stream, taps: taps, disks: disks, receiver: receiver, output: output, built: &machine)
        } catch {
            // Nothing runs here: an overlay created for a half-received disk goes.
            receiver.discard()
            throw report(error, to: stream)
        }
    }

    /// Tells the source why the migration ends here (when it can still hear)
    /// and gives the error to throw.
    private static func report(_ error: Error, to stream: ByteStream) -> Error {
        do {
            throw error
        } catch let error as MigrationError where error.kind == .refused {
            try? MigrationFrame.write(.refused, payload: MigrationFrame.text(error.message), to: stream)
            try? stream.flush()
            return error
        } catch let error as MigrationError {
            return error
        } catch ByteStreamError.endOfStream {
            return MigrationError(.connection, "the source closed the connection before commit; the VM was not started here")
        } catch {
            // Malformed state and the like: tell the source, which keeps its VM.
            try? MigrationFrame.write(.refused, payload: MigrationFrame.text("\(error)"), to: stream)
            try? stream.flush()
            return MigrationError(.failed, "\(error)")
        }
    }

    private static func receive(_ stream: ByteStream, taps: [String], disks: [String], receiver: DiskReceiver,
                                output: @escaping @Sendable (UInt8) -> Void, built: inout Machine?) throws -> IncomingVM {
        // start
        let startHeader = try MigrationFrame.readHeader(from: stream)
        guard startHeader.kind == .start else {
            throw MigrationError(.malformed, "the stream begins with \(startHeader.kind), not start")
        }
        let version = try MigrationVersion.check(startPayload: try MigrationFrame.readPayload(startHeader, from: stream))
        try MigrationFrame.write(.accepted, to: stream)
        try stream.flush()

        // config: checked against this host; then the machine is built (nothing runs).
        let configHeader = try next(stream, expecting: [.config])
        let config = try MigrationConfig.decode(try MigrationFrame.readPayload(configHeader, from: stream))
        let recorded = config.machine
        let plan = try DiskReceiver.plan(for: recorded.devices.filter { $0.kind == "virtio-block" }, overrides: disks)
        var overlays: [Int: String] = [:]
        for (n, copied) in plan.copied.enumerated() where copied { overlays[n] = disks[n] }
        let devices = try incomingDevices(recorded, taps: taps, overlays: overlays)
        guard recorded.cpuCount <= MachineConfig.maximumCPUs else {
            throw MigrationError(.refused, "the VM has \(recorded.cpuCount) vCPUs; this Skiff runs at most \(MachineConfig.maximumCPUs)")
        }
        do { _ = try checkMemoryMap(recorded) } catch { throw MigrationError(.refused, "\(error)") }
        let machineConfig = MachineConfig(kernelPath: recorded.kernelPath, initrdPath: recorded.initrdPath,
                                          commandLine: recorded.commandLine, cpuCount: recorded.cpuCount,
                                          memorySize: recorded.memorySize, disks: devices.disks, networks: devices.networks)
        // With disks, the source writes the images until its switch-over: they are
        // opened (locked, qcow2 metadata read) only then, in the machine built at
        // the state phase. Until then a machine without devices takes the memory.
        var machine: Machine
        do {
            var early = machineConfig
            if !devices.disks.isEmpty { early.disks = []; early.networks = [] }
            machine = try Machine(building: early, needsBootFiles: false, output: output)
        } catch {
            throw MigrationError(.refused, "cannot build the VM here: \(error)")
        }
        built = machine
        try MigrationHostCheck.check(config, offered: try machine.vcpuThreads[0].vcpu.cpuid(),
                                     hostVendor: MigrationHostCheck.vendor(of: try machine.kvm.supportedCPUID()),
                                     xsaveSize: machine.vm.xsaveSize)
        if !overlays.isEmpty {
            // Disks without shared storage: the source describes their chains, checked here before any transfer.
            guard version >= MigrationVersion.disks else {
                throw MigrationError(.refused, "the source speaks migration protocol \(version), which cannot send disks "
                    + "without shared storage (--disk path= given here); update it or use shared storage")
            }
            try MigrationFrame.write(.diskPlan, payload: plan.bytes, to: stream)
            try stream.flush()
            let disksHeader = try next(stream, expecting: [.disks])
            let list = try MigrationDiskList.decode(try MigrationFrame.readPayload(disksHeader, from: stream), plan: plan)
            try receiver.prepare(list, overlays: overlays)
        }
        try MigrationFrame.write(.accepted, to: stream)
        try stream.flush()

        // memory (and disk) rounds, then state
        let disksReceiver = receiver
        var receiver = MemoryReceiver(memory: machine.memory)
        var iterations = 0
        while true {
            let header = try next(stream, expecting: disksReceiver.isEmpty ? [.memory, .iterationEnd, .state]
                                                                            : [.memory, .disk, .iterationEnd, .state])
            switch header.kind {
            case .memory:
                try receiver.receive(header, from: stream)
            case .disk:
                try disksReceiver.receive(header, from: stream)
            case .iterationEnd:
                _ = try MigrationFrame.readPayload(header, from: stream)
                iterations += 1
                try disksReceiver.flush()
            default:
                let bytes = try MigrationFrame.readPayload(header, from: stream)
                let received = ContinuousClock.now
                let state = try MachineState.decodeStateFile(bytes, name: "the migration state")
                let decoded = ContinuousClock.now
                try state.checkConsistency(with: recorded)
                guard state.devices.virtio.count == devices.disks.count + devices.networks.count else {
                    throw MigrationError(.malformed, "the state holds \(state.devices.virtio.count) virtio device(s), "
                        + "the config \(devices.disks.count + devices.networks.count)")
                }
                var buildTime: Duration = .zero
                if !devices.disks.isEmpty {
                    let t0 = ContinuousClock.now
                    defer { buildTime = ContinuousClock.now - t0 }
                    // The source has flushed and unlocked its shared images, and sent the last
                    // clusters of the others: now open them.
                    let closing = ContinuousClock.now
                    try disksReceiver.finish()
                    if !disksReceiver.created.isEmpty {
                        machine.log.info("migration: received overlays closed in \(milliseconds(ContinuousClock.now - closing))")
                    }
                    let memory = machine.memory
                    built = nil
                    do {
                        machine = try Machine(building: machineConfig, restoredMemory: memory, needsBootFiles: false,
                                              output: output)
                    } catch {
                        throw MigrationError(.refused, "cannot open the VM's devices here: \(error)")
                    }
                    built = machine
                }
                _ = try machine.restore(state, clock: .frozen)
                try MigrationFrame.write(.ready, to: stream)
                try stream.flush()
                let now = ContinuousClock.now
                let buildNote = devices.disks.isEmpty ? "" : "machine with its disks built in \(milliseconds(buildTime)), "
                machine.log.info("migration state decoded in \(milliseconds(decoded - received)), \(buildNote)applied in \(milliseconds(now - decoded - buildTime))")
                let commit = try next(stream, expecting: [.commit])
                let flag = try MigrationFrame.readPayload(commit, from: stream)
                guard flag.count == 1, flag[0] <= 1 else { throw MigrationError(.malformed, "commit with a bad run flag") }
                return IncomingVM(machine: machine, startPaused: flag[0] == 0, iterations: iterations,
                                  committedAt: ContinuousClock.now)
            }
        }
    }

    /// The devices to build, in the source's order (disks, then network cards).
    /// A disk opens the recorded image path, which must be the same file as the
    /// source's (shared storage; docs/migration.md, "Disks"), or, when copied,
    /// its new overlay in `overlays` (by disk index). A network card gets
    /// the recorded MAC and TAP name, unless `taps` overrides it (by order).
    static func incomingDevices(_ recorded: SnapshotMachineConfig, taps: [String], overlays: [Int: String] = [:]) throws
        -> (disks: [BlockDeviceConfig], networks: [NetDeviceConfig]) {
        let virtio = recorded.devices.filter { $0.kind.hasPrefix("virtio-") }
        let disks = virtio.filter { $0.kind == "virtio-block" }
        let cards = virtio.filter { $0.kind == "virtio-net" }
        guard virtio.map(\.kind) == disks.map(\.kind) + cards.map(\.kind) else {
            throw MigrationError(.refused, "the VM's virtio devices are not disks followed by network cards: "
                + virtio.map(\.kind).joined(separator: ", ").prefix(200))
        }
        guard taps.count <= cards.count else {
            throw MigrationError(.refused, "\(taps.count) --net given, the incoming VM has \(cards.count) network card(s)")
        }
        let diskConfigs = try disks.enumerated().map { n, d -> BlockDeviceConfig in
            guard let path = d.path, let format = d.format.flatMap(DiskFormat.init(rawValue:)) else {
                throw MigrationError(.malformed, "disk \(n) has no image path or no valid format in the config")
            }
            if let overlay = overlays[n] {
                return BlockDeviceConfig(path: overlay, readOnly: false, serial: d.serial, format: .qcow2)
            }
            guard FileManager.default.fileExists(atPath: path) else {
                throw MigrationError(.refused, "disk \(n): \(path) does not exist here; the destination must see the "
                    + "same image file as the source (shared storage), or be given a new overlay for it "
                    + "(--disk path=NEW.qcow2 with --incoming) to receive its top layer")
            }
            return BlockDeviceConfig(path: path, readOnly: d.readOnly ?? false, serial: d.serial, format: format)
        }
        let netConfigs = try cards.enumerated().map { n, d -> NetDeviceConfig in
            guard let tap = taps[safe: n] ?? d.tap, let text = d.mac, let mac = try? MACAddress(parsing: text) else {
                throw MigrationError(.malformed, "network card \(n) has no TAP name or no valid MAC in the config")
            }
            return NetDeviceConfig(tap: tap, mac: mac)
        }
        return (diskConfigs, netConfigs)
    }

    /// The next header, which must be one of `kinds`; an `abandon` ends the migration.
    private static func next(_ stream: ByteStream, expecting kinds: [MigrationFrame.Kind]) throws -> MigrationFrame.Header {
        let header = try MigrationFrame.readHeader(from: stream)
        if header.kind == .abandon {
            let why = MigrationFrame.decodeText(try MigrationFrame.readPayload(header, from: stream))
            throw MigrationError(.abandoned, "the source abandoned the migration: \(why)")
        }
        guard kinds.contains(header.kind) else {
            throw MigrationError(.malformed, "unexpected \(header.kind) message (expected "
                + kinds.map { "\($0)" }.joined(separator: " or ") + ")")
        }
        return header
    }

    /// Tells the source the VM runs here (call once the vCPUs run). If that
    /// cannot be said, the source will resume its copy: this one must stop.
    public static func confirmRunning(_ vm: IncomingVM, over stream: ByteStream) {
        let machine = vm.machine
        do {
            try MigrationFrame.write(.running, to: stream)
            try stream.flush()
            machine.log.info("migration: running sent \(milliseconds(ContinuousClock.now - vm.committedAt)) after the commit")
            machine.announceNetworkCards()
        } catch {
            machine.stop(.failed("could not confirm the migration to the source (\(error)); the source keeps the VM"))
        }
    }
}

/// Writes received memory runs into guest RAM, after checking each lies in RAM.
struct MemoryReceiver {
    let memory: GuestMemory
    /// Pages that got data: a later zero marker must clear them; others are zero already.
    private let received: PageBitmap

    init(memory: GuestMemory) {
        self.memory = memory
        received = PageBitmap(pages: Int(memory.totalSize / 4096))
    }

    /// MADV_POPULATE_WRITE (Linux 5.14), which Glibc's headers here may not name.
    private static let populateWrite: Int32 = 23
    /// Where a run's bytes land before they are written into the memfd (reused).
    private var staging = [UInt8]()
    private static let stagingSize = 256 << 10

    mutating func receive(_ header: MigrationFrame.Header, from stream: ByteStream) throws {
        var runBytes = [UInt8](repeating: 0, count: MemoryRun.headerSize)
        guard header.length >= UInt64(MemoryRun.headerSize) else {
            throw MigrationError(.malformed, "memory message of \(header.length) bytes, shorter than its run header")
        }
        try runBytes.withUnsafeMutableBytes { try stream.read(into: $0) }
        let run = try MemoryRun.parse(runBytes, frameLength: header.length)
        let address = GuestAddress(run.guestAddress)
        guard let region = memory.region(containing: address),
              run.byteCount <= region.size - (run.guestAddress - region.start.rawValue) else {
            throw MigrationError(.malformed, "memory run at 0x\(String(run.guestAddress, radix: 16)) of \(run.pages) pages "
                + "is not inside guest RAM")
        }
        let offset = run.guestAddress - region.start.rawValue
        let firstPage = Int((region.fileOffset + offset) / 4096)
        // SAFETY: offset + byteCount <= region.size, checked above.
        let target = UnsafeMutableRawBufferPointer(start: region.hostAddress + Int(offset), count: Int(run.byteCount))
        switch run.encoding {
        case .data where memory.backing == .memfd:
            // Into the memfd with pwrite: a write that fills a page of a hole gets a page
            // the kernel does not zero first, where a fault (or MADV_POPULATE_WRITE) zeroes
            // it and the data then overwrites it. The zeroing was 64 % of the destination's
            // CPU (perf); with it gone a 960 MiB guest arrives much faster (docs/migration-performance.md).
            try receiveThroughFile(target.count, at: region.fileOffset + offset, from: stream)
            received.mark(first: firstPage, count: Int(run.pages))
        case .data:
            // A file-backed (copy-on-write) RAM: straight into the mapping. Pages not
            // received before: one MADV_POPULATE_WRITE makes the run's pages at once
            // instead of a page fault per 4 KiB inside recv (a kernel before 5.14 refuses
            // it, and the faults do it as before).
            if !received.isSet(firstPage) { _ = madvise(target.baseAddress, target.count, Self.populateWrite) }
            try stream.read(into: target)
            received.mark(first: firstPage, count: Int(run.pages))
        case .zero:
            // Only pages that got data need clearing; writing the others would allocate them.
            for p in 0..<Int(run.pages) where received.isSet(firstPage + p) {
                UnsafeMutableRawBufferPointer(rebasing: target[(p * 4096)..<((p + 1) * 4096)]).initializeMemory(as: UInt8.self, repeating: 0)
            }
        }
    }

    /// Reads `count` bytes of the stream and writes them to the memory file at `fileOffset`.
    private mutating func receiveThroughFile(_ count: Int, at fileOffset: UInt64, from stream: ByteStream) throws {
        if staging.isEmpty { staging = [UInt8](repeating: 0, count: Self.stagingSize) }
        let fd = memory.fileDescriptor
        var done = 0
        while done < count {
            let n = min(Self.stagingSize, count - done)
            try staging.withUnsafeMutableBytes { buffer in
                let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
                try stream.read(into: part)
                var written = 0
                while written < n {
                    let rc = pwrite(fd, part.baseAddress! + written, n - written, off_t(fileOffset) + off_t(done + written))
                    if rc < 0 && errno == EINTR { continue }
                    guard rc > 0 else {
                        throw MigrationError(.failed, "writing received memory into guest RAM: \(String(cString: strerror(errno)))")
                    }
                    written += rc
                }
            }
            done += n
        }
    }
}
