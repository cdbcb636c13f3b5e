/// The states a VM goes through, and the only transitions between them.
///
///     created ──start──▶ running ◀──resume── paused  (or start paused)
///                           │ └────pause────▶  │
///                           └──▶ shuttingDown ◀┘ ──▶ stopped
///
/// `snapshotting`, `migrating` and `receiving` are reserved for snapshot and
/// live migration, which run while the VM is paused or running.
public enum VMRunState: String, Sendable, CaseIterable {
    case created, running, paused, snapshotting, migrating, receiving, shuttingDown, stopped

    /// The name the control API reports (Cloud Hypervisor's spelling).
    public var apiName: String {
        switch self {
        case .created: return "Created"
        case .running: return "Running"
        case .paused: return "Paused"
        case .snapshotting: return "Snapshotting"
        case .migrating: return "Migrating"
        case .receiving: return "Receiving"
        case .shuttingDown, .stopped: return "Shutdown"
        }
    }
}

/// Why a lifecycle request was refused.
public struct LifecycleError: Error, Equatable, CustomStringConvertible, Sendable {
    public let from: VMRunState
    public let to: VMRunState
    public var description: String {
        switch (from, to) {
        case (.running, .running): return "the VM is already running"
        case (.paused, .paused): return "the VM is already paused"
        case (.paused, .running) , (.running, .paused): return "cannot go from \(from.rawValue) to \(to.rawValue) now"
        case (.shuttingDown, _), (.stopped, _): return "the VM is shutting down"
        case (.created, _): return "the VM has not started yet"
        default: return "cannot go from \(from.rawValue) to \(to.rawValue)"
        }
    }
}

/// The one owner of a VM's run state: every transition goes through `move(to:)`,
/// which refuses illegal ones instead of trapping or hanging.
public struct VMLifecycle: Sendable {
    public private(set) var state: VMRunState = .created

    public init() {}

    /// Whether `from → to` is a legal transition.
    public static func allows(_ from: VMRunState, _ to: VMRunState) -> Bool {
        switch (from, to) {
        case (.created, .running), (.created, .paused), (.created, .receiving), (.created, .shuttingDown):
            return true
        case (.running, .paused), (.running, .snapshotting), (.running, .migrating), (.running, .shuttingDown):
            return true
        case (.paused, .running), (.paused, .snapshotting), (.paused, .migrating), (.paused, .shuttingDown):
            return true
        case (.snapshotting, .running), (.snapshotting, .paused), (.snapshotting, .shuttingDown):
            return true
        case (.migrating, .running), (.migrating, .paused), (.migrating, .shuttingDown):
            return true
        case (.receiving, .running), (.receiving, .paused), (.receiving, .shuttingDown):
            return true
        case (.shuttingDown, .stopped):
            return true
        default:
            return false
        }
    }

    /// Moves to `new`, or throws why not (the state stays as it was).
    public mutating func move(to new: VMRunState) throws {
        guard Self.allows(state, new) else { throw LifecycleError(from: state, to: new) }
        state = new
    }
}
