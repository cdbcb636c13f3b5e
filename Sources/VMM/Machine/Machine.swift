import CKVM
import Devices
import Events
import GuestMemory
import KVM
import Logging
import Posix
import Seccomp
import Virtio
import X86
#if canImport(Glibc)
import Glibc
#endif

/// A built VM: KVM objects, guest RAM, buses and devices, the event loop and the
/// vCPU threads. `run()` starts it and blocks until it powers off, reboots or
/// crashes.
// Sound because: run state, exit reason and snapshot progress change under `lock`, control requests under `control`; the other vars are set while building or by `run` before other threads see them.
public final class Machine: @unchecked Sendable {
    public let config: MachineConfig
    let kvm: KVM
    let vm: VirtualMachine
    public let memory: GuestMemory
    let pio = Bus()
    let mmio = Bus()
    let events: EventLoop
    let serial: Serial8250
    private(set) var virtio = VirtioDevices()
    var vcpuThreads: [VCPUThread] = []
    let gate = VCPUGate()
    private var keepAlive: [AnyObject] = []
    /// Kept for the VM's life: it feeds stdin to the UART until teardown.
    private var console: ConsoleInput?

    /// Guards `exitReason` and `lifecycle`.
    let lock = ThreadLock()
    private var exitReason: MachineExit?
    /// The run state; every change goes through `lifecycle.move(to:)` under `lock`.
    var lifecycle = VMLifecycle()
    /// Serialises pause, resume and the other control requests.
    let control = ThreadLock()
    /// When `run` started the vCPUs (for uptime).
    var startedAt: ContinuousClock.Instant?
    /// When `init(restoringFrom:)` began, to log restore → vCPUs running.
    var restoreStartedAt: ContinuousClock.Instant?
    /// The snapshot being written or the last one (under `lock`).
    var snapshotProgressStorage: SnapshotProgress?
    /// Lifecycle transitions at info, with timings; failures at error.
    let log = Logger(label: "skiff.vmm")
    /// Signalled once by `stop`; `run` waits on it (with the termination signals).
    private let stopEvent: EventFD
    /// System call filters for the threads `run` starts (vCPUs: `vcpu`, event
    /// loop: `events`). Off by default: the in-process tests run without them;
    /// `skiff run` turns them on (docs/security.md).
    public var seccomp: SeccompMode = .off
    /// With `seccomp` on, `run` also narrows the calling thread to the `main` role
    /// once the VM runs. Only for a caller that will build no other VM in this
    /// thread (no API, so no `vm.reboot`).
    public var seccompNarrowsCaller = false

    /// Builds the whole VM from a validated config and loads its kernel; nothing runs yet.
    public convenience init(config: MachineConfig, output: @escaping @Sendable (UInt8) -> Void = Machine.writeToStdout) throws {
        try self.init(building: config, output: output)
        try loadKernel()
    }

    /// Builds the machine — KVM objects, RAM, buses, devices, configured vCPUs —
    /// without putting anything in RAM or in the vCPUs' registers: a restore
    /// fills those from saved state instead of `loadKernel()`.
    /// - Parameter restoredMemory: RAM already holding a guest (a snapshot's memory
    ///   file mapped copy-on-write); nil makes fresh memfd RAM. With it the kernel
    ///   and initrd files are not needed.
    /// - Parameter needsBootFiles: check that kernel and initrd exist (default:
    ///   only when RAM is fresh); an incoming migration fills fresh RAM without them.
    init(building config: MachineConfig, restoredMemory: GuestMemory? = nil, needsBootFiles: Bool? = nil,
         output: @escaping @Sendable (UInt8) -> Void) throws {
        try config.validate(bootFiles: needsBootFiles ?? (restoredMemory == nil))
        let buildStart = ContinuousClock.now
        self.config = config
        stopEvent = try EventFD("VM stop")
        kvm = try KVM()
        vm = try kvm.createVM()
        events = try EventLoop()

        // Intel VT-x needs these below 4 GiB, out of the way of RAM and devices;
        // other KVM back ends accept and ignore them.
        try? vm.setIdentityMapAddress(0xFFFB_C000)
        try? vm.setTSSAddress(0xFFFB_D000)

        // RAM's slots before the irqchip and the PIT: in that order the three ioctls take
        // 0.1–0.3 ms each here; after them, each waited 4–8 ms in `synchronize_srcu`
        // (docs/performance.md, "Start-up: the order of KVM's set-up calls").
        memory = try restoredMemory
            ?? GuestMemory(ranges: MemoryMap.ramRanges(size: config.memorySize).map { (GuestAddress($0.start), $0.size) })
        for (slot, region) in memory.regions.enumerated() {
            try vm.setUserMemoryRegion(slot: UInt32(slot), guestAddress: region.start.rawValue, size: region.size,
                                       hostAddress: region.hostAddress)
        }
        try vm.createIRQChip()
        try vm.createPIT()

        // Devices. Callbacks may run on vCPU threads; `stop` is thread-safe. `unowned` (checked,
        // not `unowned(unsafe)`): they run only while the machine lives, and a rare path can afford the check.
        let serialIRQ = try IRQFDLine(vm: vm, gsi: Layout.serialIRQ)
        keepAlive.append(serialIRQ)
        serial = Serial8250(interrupt: serialIRQ, output: output)
        try pio.insert(serial, at: UInt64(Layout.serialPort), length: 8)
        try pio.insert(I8042 { [unowned self] in self.stop(.rebooted) },
                       at: UInt64(Layout.i8042DataPort), length: 5)
        try pio.insert(ACPISleepControl(softOffType: Layout.sleepTypeS5, resetValue: Layout.acpiResetValue,
                                        onPowerOff: { [unowned self] in self.stop(.poweredOff) },
                                        onReset: { [unowned self] in self.stop(.rebooted) }),
                       at: UInt64(Layout.acpiSleepControlPort), length: ACPISleepControl.length)

        for disk in config.disks {
            try virtio.add(try VirtioBlock(config: disk), machine: vm, memory: memory, mmio: mmio, events: events)
        }
        for network in config.networks {
            try virtio.add(try VirtioNet(config: network), machine: vm, memory: memory, mmio: mmio, events: events)
        }

        let supportedCPUID = try kvm.supportedCPUID()
        for id in 0..<config.cpuCount {
            let vcpu = try vm.createVCPU(id: id)
            try VCPUSetup.configure(vcpu, supportedCPUID: supportedCPUID, cpuCount: config.cpuCount)
            vcpuThreads.append(VCPUThread(vcpu: vcpu, pio: pio, mmio: mmio, gate: gate,
                                          onExit: { [unowned self] in self.stop($0) }))
        }
        log.info("VM built in \(Self.milliseconds(ContinuousClock.now - buildStart)): \(config.cpuCount) vCPU(s), \(config.memorySize >> 20) MiB, \(config.disks.count) disk(s), \(config.networks.count) network card(s)")
    }

    /// Fresh boot: firmware tables, the kernel (which needs the RSDP address),
    /// its boot tables, and the boot vCPU's entry registers.
    func loadKernel() throws {
        try MPTable.write(cpuCount: config.cpuCount, to: memory)
        let rsdp = try ACPITables.write(ACPIConfiguration(cpuCount: config.cpuCount, virtioDevices: virtio.resources),
                                        to: memory)
        var bootConfig = config
        // Concatenated by hand: `joined(separator:)`'s generic witnesses cost 0.3 M instructions at start-up.
        var commandLine = config.commandLine
        for argument in virtio.commandLineArguments { commandLine += " " + argument }
        bootConfig.commandLine = commandLine
        let boot = try KernelBoot.load(config: bootConfig, memory: memory, rsdp: rsdp)
        try boot.writeTables(to: memory)
        try VCPUSetup.setBootRegisters(vcpuThreads[0].vcpu, boot)
    }

    static func milliseconds(_ d: Duration) -> String {
        let (s, attos) = d.components
        return String(cFormat: "%.3f ms", Double(s) * 1000 + Double(attos) / 1e15)
    }

    /// Starts the event loop and the vCPUs; returns when the guest is gone and
    /// everything is torn down (see `tearDown`).
    /// - Parameter signals: termination signals, blocked since before the caller
    ///   started any thread; made here when nil.
    /// - Parameter startPaused: start everything but keep the vCPUs parked and the
    ///   device loop held, as after `pause()`; `resume()` lets the guest run.
    /// - Parameter onStarted: called once the vCPU threads run (an incoming
    ///   migration confirms to its source there).
    public func run(attachConsole: Bool = true, signals given: TerminationSignals? = nil,
                    startPaused: Bool = false, onStarted: (() -> Void)? = nil) -> MachineExit {
        // Before any thread starts, so that all of them inherit the blocked mask.
        let signals: TerminationSignals
        do {
            signals = try given ?? TerminationSignals()
        } catch {
            return .failed("\(error)")
        }
        if attachConsole {
            let raw = Terminal.enterRawMode()
            let input = ConsoleInput(serial: serial, loop: events, escapeEnabled: raw) { [unowned self] in
                self.stop(.quitFromConsole)
            }
            input.start()
            console = input
        }
        VCPUThread.installKickHandler()
        events.onFailure = { [unowned self] failure in
            self.stop(.failed("device event loop: \(failure); the devices cannot work without it"))
        }
        let seccomp = self.seccomp
        if seccomp != .off {
            SeccompFilter.setBeforeExit { Terminal.restore() }  // a killed VMM leaves no raw terminal
        }
        do {
            let disks = virtio.transports.compactMap { $0.device as? VirtioBlock }
            try events.start(onStart: {
                // The disks' I/O threads start here, before this thread narrows to a role
                // that cannot create threads; each narrows to its own role first thing.
                for disk in disks { try disk.startIOThreads { try SeccompFilter.install(.diskIO, mode: seccomp) } }
                try SeccompFilter.install(.events, mode: seccomp)
            })
            if startPaused {
                // Held before any vCPU thread exists: the first KVM_RUN waits for resume().
                gate.set(.pause)
                events.park(after: {})
            }
            lock.withLock {
                try? lifecycle.move(to: startPaused ? .paused : .running)
                startedAt = .now
            }
            for t in vcpuThreads { try t.start(seccomp: seccomp) }
            // A migrated-in VM tells its source it runs before the main thread is narrowed (it sends on the stream).
            if !isStopping { onStarted?() }
            if seccompNarrowsCaller { try SeccompFilter.install(.main, mode: seccomp) }
        } catch {
            stop(.failed("starting the VM: \(error)"))
        }

        log.info(startPaused ? "started paused" : "running")
        if let restoreStartedAt {
            log.info("restore → vCPU threads started in \(Self.milliseconds(ContinuousClock.now - restoreStartedAt))")
        }

        waitForStop(signals: signals)
        let stopping = ContinuousClock.now
        let reason = tearDown()
        Terminal.restore()
        log.info("stopped in \(Self.milliseconds(ContinuousClock.now - stopping)): \(reason.summary)")
        return reason
    }

    /// Blocks until `stop` is called or a termination signal arrives.
    private func waitForStop(signals: TerminationSignals) {
        var fds = [pollfd(fd: stopEvent.fileDescriptor, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: signals.fileDescriptor, events: Int16(POLLIN), revents: 0)]
        while !isStopping {
            let n = poll(&fds, nfds_t(fds.count), -1)
            if n < 0 && errno != EINTR {
                stop(.failed("poll on the stop event: \(String(cString: strerror(errno)))"))
            }
            if let signal = signals.take() {
                stop(.terminated(signal: signal))
                signals.escalate()  // a second one, should the teardown hang, ends the process
            }
        }
    }

    /// Ends the VM in an order that loses nothing: vCPUs out of KVM_RUN and
    /// joined (no new MMIO), the event loop stopped and joined (no handler runs
    /// any more), then each device completes the requests it accepted and makes
    /// the guest's writes durable (qcow2 metadata is cached write-back). A device
    /// that fails that turns a clean exit into a failure.
    private func tearDown() -> MachineExit {
        gate.set(.stop)
        for t in vcpuThreads { t.join() }
        events.unpark()  // a paused VM's loop is parked; it must run to see the stop
        events.stop()
        events.join()
        console?.stop()
        console = nil
        var problems: [String] = []
        for (index, transport) in virtio.transports.enumerated() {
            do {
                try transport.shutdown()
            } catch {
                problems.append("virtio device \(index): \(error)")
            }
        }
        lock.lock(); defer { lock.unlock() }
        try? lifecycle.move(to: .stopped)
        let reason = exitReason ?? .failed("stopped without a reason")
        guard !problems.isEmpty else { return reason }
        for p in problems { log.error("teardown: \(p)") }
        let why = problems.joined(separator: "; ") + " (guest writes since its last flush may be lost)"
        if case .crashed(let crash) = reason { return .crashed(crash + "; " + why) }
        return .failed(why)
    }

    /// Ends the VM; the first reason wins. Safe from any thread, but not from a
    /// signal handler.
    public func stop(_ reason: MachineExit) {
        lock.lock()
        let first = exitReason == nil
        if first {
            exitReason = reason
            try? lifecycle.move(to: .shuttingDown)
        }
        lock.unlock()
        if first { log.info("stopping: \(reason.summary)") }
        if first { stopEvent.signal() }
    }

    var isStopping: Bool {
        lock.lock(); defer { lock.unlock() }
        return exitReason != nil
    }
}
