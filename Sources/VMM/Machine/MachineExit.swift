/// How a VM ended. Power-off and reboot are normal ends (exit status 0, as with
/// Firecracker: a reboot ends the process and the caller decides what's next).
public enum MachineExit: Equatable, Sendable {
    case poweredOff
    case rebooted
    /// Ctrl-A x on the console.
    case quitFromConsole
    /// `vm.shutdown` / `vmm.shutdown` on the control API.
    case shutDownByRequest
    /// `vm.reboot` on the control API: the caller boots the same config again.
    case rebootRequested
    /// Triple fault or KVM internal error; the message carries the registers.
    case crashed(String)
    /// SIGTERM, SIGINT, SIGHUP or SIGQUIT (the number); the VM was shut down in order.
    case terminated(signal: Int32)
    /// Live-migrated: the destination confirmed that the VM runs there.
    case migrated
    /// The VMM itself failed (a dead event loop, a disk that could not be flushed…).
    case failed(String)

    public var exitStatus: Int32 {
        switch self {
        case .poweredOff, .rebooted, .quitFromConsole, .shutDownByRequest, .rebootRequested, .migrated: return 0
        case .crashed, .failed: return 1
        case .terminated(let signal): return 128 + signal  // as a shell reports a signal
        }
    }

    public var summary: String {
        switch self {
        case .poweredOff: return "guest powered off"
        case .rebooted: return "guest rebooted"
        case .quitFromConsole: return "quit from the console (Ctrl-A x)"
        case .shutDownByRequest: return "shut down through the control API"
        case .rebootRequested: return "reboot requested through the control API"
        case .crashed(let why): return "guest crashed: \(why)"
        case .terminated(let signal): return "terminated by signal \(signal)"
        case .migrated: return "migrated: the VM runs on the destination"
        case .failed(let why): return why
        }
    }
}
