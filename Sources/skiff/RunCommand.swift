import API
import ArgumentParser
import Logging
import Storage
import Virtio
import VMM

/// `skiff run`: boot a guest and wire its serial console to this terminal.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot a guest kernel with a serial console on this terminal.",
        discussion: """
        The guest's serial port (ttyS0) is this terminal: its output goes to stdout and \
        stdin goes to the guest (raw mode while stdin is a terminal; Ctrl-A x quits). \
        skiff exits 0 when the guest powers off or reboots, and non-zero if it crashes.
        """)

    @Option(help: ArgumentHelp("Kernel: an ELF vmlinux with a PVH entry note, or a bzImage.", valueName: "path"))
    var kernel: String

    @Option(help: ArgumentHelp("Initial ramdisk (initramfs) to hand the kernel.", valueName: "path"))
    var initrd: String?

    @Option(help: ArgumentHelp("Kernel command line.", valueName: "text"))
    var cmdline: String = MachineConfig.defaultCommandLine

    @Option(help: ArgumentHelp("Number of vCPUs (1–\(MachineConfig.maximumCPUs)).", valueName: "n"))
    var cpus: Int = 1

    @Option(help: ArgumentHelp("Guest RAM, e.g. 256M or 2G.", valueName: "size"))
    var memory: String = "256M"

    @Option(name: .customLong("disk"),
            help: ArgumentHelp("A virtio-blk disk: path=FILE[,readonly=on][,serial=ID][,format=raw|qcow2]. Repeat for more.",
                               valueName: "spec"))
    var disks: [String] = []

    @Option(name: .customLong("net"),
            help: ArgumentHelp("A virtio-net interface on a TAP device: tap=NAME[,mac=MAC]. Repeat for more.",
                               valueName: "spec"))
    var networks: [String] = []

    @Option(help: ArgumentHelp("Serve the control API (HTTP/JSON, Cloud Hypervisor's endpoints under /api/v1/) on this unix socket: created mode 0600, refused if another skiff serves it, removed on exit.",
                               valueName: "path"))
    var apiSocket: String?

    @Option(help: ArgumentHelp("VMM log level on stderr: trace, debug, info, notice, warning, error, critical.",
                               valueName: "level"))
    var logLevel: String = "warning"

    func run() throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("invalid --log-level '\(logLevel)': give one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        guard let memorySize = try? ByteSize(parsing: memory).bytes else {
            throw ValidationError("invalid --memory '\(memory)': give a size such as 512M or 2G")
        }
        let config = MachineConfig(kernelPath: kernel, initrdPath: initrd, commandLine: cmdline,
                                   cpuCount: cpus, memorySize: memorySize,
                                   disks: try disks.map { try BlockDeviceConfig(parsing: $0) },
                                   networks: try networks.map { try NetDeviceConfig(parsing: $0) })
        // Blocked before any thread (the API's included) starts, so only the VM's
        // orderly teardown sees SIGTERM and friends.
        let signals = try TerminationSignals()
        let control = MachineControl(config: config)
        let server = apiSocket.map { APIServer(path: $0, control: control) }
        try server?.start()
        defer { server?.stop() }  // every way out of here removes the socket
        var exit: MachineExit
        repeat {
            // `vm.reboot` boots the same config again in this process, behind the same socket.
            let machine = try Machine(config: config)
            control.attach(machine)
            exit = machine.run(signals: signals)
            control.attach(nil)
        } while exit == .rebootRequested
        switch exit {
        case .crashed: printError("skiff: \(exit.summary)")
        case .failed: printError("skiff: error: \(exit.summary)")
        default: break
        }
        throw ExitCode(exit.exitStatus)
    }
}
