/// The answer of `GET vm.info`: close to Cloud Hypervisor's `VmInfo` (`state`,
/// `config`), plus the counters that CH serves separately at `vm.counters`.
public struct VMInfo: Codable, Sendable, Equatable {
    /// One of the `VMInfo.State…` names ("Created", "Running", "Paused", "Shutdown",
    /// later "Snapshotting", "Migrating", "Receiving"). A string, not an enum, so an
    /// older client still reads the answer of a newer server.
    public var state: String
    public var config: VMConfigInfo
    /// Monotonic figures such as `uptime_ms`, `exits`, `vcpu_exits_total`.
    public var counters: [String: UInt64]
    /// The snapshot being written, or the last one this VMM wrote; absent before the first.
    public var snapshot: SnapshotProgressInfo?

    public init(state: String, config: VMConfigInfo, counters: [String: UInt64] = [:], snapshot: SnapshotProgressInfo? = nil) {
        self.state = state
        self.config = config
        self.counters = counters
        self.snapshot = snapshot
    }

    public static let stateCreated = "Created"
    public static let stateRunning = "Running"
    public static let statePaused = "Paused"
    public static let stateShutdown = "Shutdown"
    public static let stateSnapshotting = "Snapshotting"
    public static let stateMigrating = "Migrating"
    public static let stateReceiving = "Receiving"
}
