/// How a VM ended. Power-off and reboot are normal ends (exit status 0, as with
/// Firecracker: a reboot ends the process and the caller decides what's next).
public enum MachineExit: Equatable, Sendable {
    case poweredOff
    case rebooted
    /// Ctrl-A x on the console.
    case quitFromConsole
    /// Triple fault, KVM internal error, or a VMM failure; the message carries the registers.
    case crashed(String)

    public var exitStatus: Int32 {
        switch self {
        case .poweredOff, .rebooted, .quitFromConsole: return 0
        case .crashed: return 1
        }
    }

    public var summary: String {
        switch self {
        case .poweredOff: return "guest powered off"
        case .rebooted: return "guest rebooted"
        case .quitFromConsole: return "quit from the console (Ctrl-A x)"
        case .crashed(let why): return "guest crashed: \(why)"
        }
    }
}
