import API
import Seccomp
import Logging
import SkiffCLI
import Storage
import Virtio
import VMM

/// `skiff run`: boot a guest and wire its serial console to this terminal.
struct RunCommand {
    static let command = Command(
        name: "run",
        abstract: "Boot a guest kernel with a serial console on this terminal.",
        discussion: """
        The guest's serial port (ttyS0) is this terminal: its output goes to stdout and \
        stdin goes to the guest (raw mode while stdin is a terminal; Ctrl-A x quits). \
        skiff exits 0 when the guest powers off or reboots, and non-zero if it crashes.
        """,
        options: [
            .option("kernel", value: "path", help: "Kernel: an ELF vmlinux with a PVH entry note, or a bzImage."),
            .option("initrd", value: "path", help: "Initial ramdisk (initramfs) to hand the kernel."),
            .option("cmdline", value: "text", default: MachineConfig.defaultCommandLine, help: "Kernel command line."),
            .option("cpus", value: "n", .integer, default: "1",
                    help: "Number of vCPUs (1–\(MachineConfig.maximumCPUs))."),
            .option("memory", value: "size",
                    .custom(expected: "a size such as 512M or 2G") { (try? ByteSize(parsing: $0)) != nil },
                    default: "256M", help: "Guest RAM, e.g. 256M or 2G."),
            .repeated("disk", value: "spec",
                      help: "A virtio-blk disk: path=FILE[,readonly=on][,serial=ID][,format=raw|qcow2]. Repeat for more. "
                          + "With --restore (or vm.restore): path=OVERLAY, the new overlay of each disk in order. "
                          + "With --incoming (or vm.receive-migration): path=NEW.qcow2, a disk not on shared storage, "
                          + "its top layer received into that new overlay."),
            .repeated("net", value: "spec",
                      help: "A virtio-net interface on a TAP device: tap=NAME[,mac=MAC]. Repeat for more. "
                          + "With --restore (or vm.restore): tap=NAME, the TAP of each card in order."),
            .option("api-socket", value: "path",
                    help: "Serve the control API (HTTP/JSON, Cloud Hypervisor's endpoints under /api/v1/) on this unix "
                        + "socket: created mode 0600, refused if another skiff serves it, removed on exit. Without "
                        + "--kernel, --restore or --incoming, wait for vm.restore or vm.receive-migration."),
            .option("log-level", value: "level", default: "warning",
                    help: "VMM log level on stderr: trace, debug, info, notice, warning, error, critical."),
            .option("restore", value: "dir",
                    help: "Restore the VM in a snapshot directory instead of booting a kernel "
                        + "(the snapshot holds the machine config)."),
            .flag("paused", help: "With --restore: restore the VM but leave it paused."),
            .option("restore-clock", value: "policy", default: "frozen",
                    help: "With --restore: frozen (the guest sees no time pass across the snapshot) or advance "
                        + "(its clock jumps by the wall time elapsed since the snapshot)."),
            .option("incoming", value: "tcp:addr:port",
                    help: "Wait for one VM migrated here from another skiff (`skiff migrate`) on tcp:ADDR:PORT, then "
                        + "run it; the config arrives with it (no --kernel; --net tap=NAME picks its TAPs by order)."),
            .option("migration-key", value: "path", help: "With --incoming: the migration key file, the same on both hosts."),
            .flag("insecure-migration",
                  help: "With --incoming: accept plain, unauthenticated TCP instead of a key (for comparisons)."),
            .option("seccomp", value: "on|off", default: "on",
                    help: "System call filters per thread role: on, or off for debugging "
                        + "(log: load them but only log what they would refuse)."),
        ],
        run: { try RunCommand($0).run() })

    var kernel: String?
    var initrd: String?
    var cmdline: String
    var cpus: Int
    var memory: String
    var disks: [String]
    var networks: [String]
    var apiSocket: String?
    var logLevel: String
    var restore: String?
    var paused: Bool
    var restoreClock: String
    var incoming: String?
    var migrationKey: String?
    var insecureMigration: Bool
    var seccomp: String

    init(_ a: ParsedArguments) throws {
        kernel = a.string("kernel")
        initrd = a.string("initrd")
        cmdline = a.string("cmdline")!
        cpus = try a.integer("cpus")!
        memory = a.string("memory")!
        disks = a.strings("disk")
        networks = a.strings("net")
        apiSocket = a.string("api-socket")
        logLevel = a.string("log-level")!
        restore = a.string("restore")
        paused = a.flag("paused")
        restoreClock = a.string("restore-clock")!
        incoming = a.string("incoming")
        migrationKey = a.string("migration-key")
        insecureMigration = a.flag("insecure-migration")
        seccomp = a.string("seccomp")!
    }

    func run() throws {
        guard let seccompMode = SeccompMode(rawValue: seccomp) else {
            throw ValidationError("invalid --seccomp '\(seccomp)': give on or off")
        }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("invalid --log-level '\(logLevel)': give one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        // Compiled now, loaded later in one call each: for a migrated-in VM that
        // is between the source's commit and the guest running (docs/migration-performance.md),
        // and so that a disk's I/O threads, which start together, do not each compile theirs.
        try SeccompFilter.prepare([.process, .vcpu, .events, .diskIO, apiSocket == nil ? .main : .api], mode: seccompMode)
        var onStarted: (() -> Void)?
        var incomingVM: Machine.IncomingVM?
        if let incoming {
            // Received before the signals are blocked: a SIGTERM while waiting ends skiff at once.
            let received = try IncomingRun(address: incoming, keyPath: migrationKey, insecure: insecureMigration,
                                           conflicting: conflictingWithIncoming, networks: networks, disks: disks).receive()
            incomingVM = received.vm
            onStarted = { Machine.confirmRunning(received.vm, over: received.stream) }
        } else if migrationKey != nil || insecureMigration {
            throw ValidationError("--migration-key and --insecure-migration go with --incoming (or `skiff migrate`)")
        }
        // Blocked before any thread (the API's included) starts, so only the VM's
        // orderly teardown sees SIGTERM and friends.
        let signals = try TerminationSignals()
        var machine: Machine
        var startPaused = false
        let slot = incomingVM == nil && kernel == nil && restore == nil && apiSocket != nil ? try IncomingSlot() : nil
        let control = MachineControl(config: nil, incoming: slot)
        let server = apiSocket.map { APIServer(path: $0, control: control) }
        defer { server?.stop() }  // every way out of here removes the socket
        if let incomingVM {
            machine = incomingVM.machine
            startPaused = incomingVM.startPaused
            try server?.start()
        } else if let restore {
            machine = try RestoreRun(directory: restore, paused: paused, clock: restoreClock,
                                     conflicting: conflictingWithRestore, disks: disks, networks: networks).machine()
            startPaused = paused
            try server?.start()
        } else if kernel == nil, let server, let slot {
            // Cloud Hypervisor's way: an empty VMM that waits for vm.restore or vm.receive-migration.
            guard restoreClock == "frozen" else { throw ValidationError("--restore-clock needs --restore") }
            let resources = try RestoreRun(directory: "", paused: true, clock: restoreClock, conflicting: [],
                                           disks: disks, networks: networks).resources()
            try server.start()
            switch try control.waitForVM(resources: resources, signals: signals) {
            case nil:
                return  // vmm.shutdown while waiting
            case .restored(let restored):
                machine = restored
                startPaused = true  // vm.resume runs it, as after Cloud Hypervisor's restore
            case .received(let received):
                machine = received.vm.machine
                startPaused = received.vm.startPaused
                onStarted = {
                    Machine.confirmRunning(received.vm, over: received.stream)
                    slot.didStart()
                }
            }
        } else {
            guard let kernel else {
                throw ValidationError("missing --kernel (or --restore DIR, --incoming ADDR, or --api-socket PATH to wait "
                    + "for vm.restore or vm.receive-migration)")
            }
            guard !paused else { throw ValidationError("--paused needs --restore") }
            guard restoreClock == "frozen" else { throw ValidationError("--restore-clock needs --restore") }
            guard let memorySize = try? ByteSize(parsing: memory).bytes else {
                throw ValidationError("invalid --memory '\(memory)': give a size such as 512M or 2G")
            }
            let config = MachineConfig(kernelPath: kernel, initrdPath: initrd, commandLine: cmdline,
                                       cpuCount: cpus, memorySize: memorySize,
                                       disks: try disks.map { try BlockDeviceConfig(parsing: $0) },
                                       networks: try networks.map { try NetDeviceConfig(parsing: $0) })
            machine = try Machine(config: config)
            try server?.start()
        }
        // Set-up is over: the baseline on every thread, then the API's own filter on
        // its thread; the VM's threads load theirs as they start.
        let filterStart = ContinuousClock.now
        try SeccompFilter.install(.process, mode: seccompMode)
        try server?.runOnServerThreads { try SeccompFilter.install(.api, mode: seccompMode) }
        if seccompMode != .off {
            Logger(label: "skiff.seccomp").info("seccomp \(seccompMode): baseline and API filters loaded in \(ContinuousClock.now - filterStart)")
        }
        while true {
            machine.seccomp = seccompMode
            machine.seccompNarrowsCaller = server == nil  // without the API nothing rebuilds a VM here
            control.attach(machine)
            let exit = machine.run(signals: signals, startPaused: startPaused, onStarted: onStarted)
            onStarted = nil
            control.attach(nil)
            // `vm.reboot` boots the same config again in this process, behind the same socket.
            guard exit == .rebootRequested else { throw ExitCode(Self.report(exit)) }
            startPaused = false
            machine = try Machine(config: machine.config)
        }
    }

    /// The options a snapshot's own config replaces.
    private var conflictingWithRestore: [String] {
        [kernel.map { _ in "--kernel" }, initrd.map { _ in "--initrd" }].compactMap { $0 }
    }

    /// The options an incoming VM's own config replaces (--net names the TAPs to open instead).
    private var conflictingWithIncoming: [String] {
        conflictingWithRestore + [restore.map { _ in "--restore" }].compactMap { $0 }
    }

    /// Prints why the guest ended when that is an error; returns the exit status.
    static func report(_ exit: MachineExit) -> Int32 {
        switch exit {
        case .migrated: printError("skiff: \(exit.summary)")
        case .crashed: printError("skiff: \(exit.summary)")
        case .failed: printError("skiff: error: \(exit.summary)")
        default: break
        }
        return exit.exitStatus
    }
}
