import ArgumentParser
import VMM
import VMState

/// `skiff run --restore DIR`: rebuild a snapshotted VM in this process and run
/// it (or leave it paused), its serial console on this terminal.
struct RestoreRun {
    var directory: String
    var paused: Bool
    var clock: String
    /// Boot options given along with --restore, which a snapshot does not take.
    var conflicting: [String]

    /// The restored machine, not yet running; errors (before any vCPU runs) are thrown.
    func machine() throws -> Machine {
        if let first = conflicting.first {
            throw ValidationError("\(first) cannot be used with --restore: the snapshot holds the machine config")
        }
        let policy: ClockRestore
        switch clock {
        case "frozen": policy = .frozen
        case "advance": policy = .advancedByElapsedRealTime
        default: throw ValidationError("invalid --restore-clock '\(clock)': give frozen or advance")
        }
        return try Machine(restoringFrom: directory, clock: policy)
    }
}
