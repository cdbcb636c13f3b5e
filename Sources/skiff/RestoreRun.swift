import SkiffCLI
import Virtio
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
    /// `--disk path=OVERLAY` and `--net tap=NAME`, by device order.
    var disks: [String] = []
    var networks: [String] = []

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
        return try Machine(restoringFrom: directory, clock: policy, resources: try resources())
    }

    /// Only the host side may be given: the format, serial, read-only flag and
    /// MAC are the snapshot's (the guest already knows them).
    func resources() throws -> RestoreResources {
        let paths = try disks.map { spec -> String in
            let disk = try BlockDeviceConfig(parsing: spec)
            guard !disk.readOnly, disk.serial == nil, disk.format == nil else {
                throw ValidationError("--disk with --restore takes only path=OVERLAY (the rest is the snapshot's)")
            }
            return disk.path
        }
        let taps = try networks.map { spec -> String in
            let net = try NetDeviceConfig(parsing: spec)
            guard net.mac == nil else {
                throw ValidationError("--net with --restore takes only tap=NAME (the MAC is the snapshot's)")
            }
            return net.tap
        }
        return RestoreResources(diskPaths: paths, taps: taps)
    }
}
