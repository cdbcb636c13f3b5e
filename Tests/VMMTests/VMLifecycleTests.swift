import Testing
@testable import VMM

/// The run-state table: every legal transition is taken, every other one is
/// refused with a reason and leaves the state as it was.
struct VMLifecycleTests {
    static let legal: Set<String> = [
        "created→running", "created→paused", "created→receiving", "created→shuttingDown",
        "running→paused", "running→snapshotting", "running→migrating", "running→shuttingDown",
        "paused→running", "paused→snapshotting", "paused→migrating", "paused→shuttingDown",
        "snapshotting→running", "snapshotting→paused", "snapshotting→shuttingDown",
        "migrating→running", "migrating→paused", "migrating→shuttingDown",
        "receiving→running", "receiving→paused", "receiving→shuttingDown",
        "shuttingDown→stopped",
    ]

    /// A lifecycle that has reached `state` through legal steps.
    static func lifecycle(at state: VMRunState) throws -> VMLifecycle {
        var l = VMLifecycle()
        let path: [VMRunState] = switch state {
        case .created: []
        case .running: [.running]
        case .paused: [.running, .paused]
        case .snapshotting: [.running, .snapshotting]
        case .migrating: [.running, .migrating]
        case .receiving: [.receiving]
        case .shuttingDown: [.running, .shuttingDown]
        case .stopped: [.running, .shuttingDown, .stopped]
        }
        for s in path { try l.move(to: s) }
        return l
    }

    @Test(arguments: VMRunState.allCases)
    func everyTransitionFrom(_ from: VMRunState) throws {
        for to in VMRunState.allCases {
            var l = try Self.lifecycle(at: from)
            let key = "\(from.rawValue)→\(to.rawValue)"
            if Self.legal.contains(key) {
                try l.move(to: to)
                #expect(l.state == to, "\(key)")
            } else {
                #expect(throws: LifecycleError.self, "\(key) must be refused") { try l.move(to: to) }
                #expect(l.state == from, "a refused \(key) changed the state")
            }
        }
    }

    @Test func refusalsSayWhy() {
        #expect(LifecycleError(from: .paused, to: .paused).description == "the VM is already paused")
        #expect(LifecycleError(from: .running, to: .running).description == "the VM is already running")
        #expect(LifecycleError(from: .stopped, to: .running).description == "the VM is shutting down")
        #expect(VMRunState.paused.apiName == "Paused" && VMRunState.stopped.apiName == "Shutdown")
    }
}
