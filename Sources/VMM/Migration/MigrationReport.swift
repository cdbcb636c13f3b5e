/// How a pre-copy migration is to run.
public struct MigrationOptions: Sendable {
    /// The longest the guest may be stopped for the final copy (the switch-over).
    public var downtimeLimit: Duration = .milliseconds(5)
    /// Rounds of pre-copy before switching over whatever is left.
    public var maxIterations = 30
    /// Time of pre-copy (throttled or not) before switching over whatever is left.
    public var maxPrecopyTime: Duration = .seconds(60)
    /// Throttle the vCPUs step by step when the guest dirties memory faster than it is sent.
    public var autoConverge = true

    public init() {}
}

/// Where a migration is, for progress lines and `vm.info`.
public struct MigrationProgress: Sendable, Equatable {
    public var iteration = 0
    /// Bytes put on the wire so far.
    public var bytesSent: UInt64 = 0
    /// Measured bytes per second.
    public var rate: Double = 0
    /// Dirty bytes left to send.
    public var dirtyBytes: UInt64 = 0
    /// What sending the dirty bytes now would take.
    public var expectedDowntime: Duration = .zero
    /// The vCPU throttle (auto-converge), percent.
    public var throttlePercent = 0

    public init() {}
}

/// What a finished migration measured.
public struct MigrationSummary: Sendable {
    public var total: Duration
    /// Guest stopped: pause → the destination confirmed it runs.
    public var downtime: Duration
    public var bytesSent: UInt64
    public var iterations: Int
    /// Pre-copy reached the downtime limit (false: it switched over at a bound).
    public var converged: Bool
    /// The highest vCPU throttle used (0: none).
    public var throttlePercent: Int
    /// "KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG" or without manual protect.
    public var dirtyLog: String

    public var text: String {
        let how = converged ? "converged" : "did not converge within the bounds; switched over anyway"
        let throttle = throttlePercent > 0 ? ", vCPUs throttled up to \(throttlePercent)%" : ""
        return "migrated in \(Self.ms(total)): downtime \(Self.ms(downtime)), \(bytesSent) bytes in \(iterations) "
            + "iteration(s), \(how)\(throttle)"
    }

    static func ms(_ d: Duration) -> String {
        let (s, a) = d.components
        return String(cFormat: "%.1f ms", Double(s) * 1000 + Double(a) / 1e15)
    }
}
