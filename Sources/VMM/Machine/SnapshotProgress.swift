import Posix

/// How far a snapshot has got, updated by the thread writing it and read by
/// the control API (`vm.info`), so a client can show progress for a large
/// guest. One per snapshot; the machine keeps the last.
public final class SnapshotProgress: Sendable {
    public enum Phase: String, Sendable { case disks, memory, state, done, failed }

    public struct Report: Sendable, Equatable {
        public var phase: Phase
        public var memoryBytes: UInt64
        public var memoryBytesScanned: UInt64
        public var memoryBytesWritten: UInt64
        public var diskBytesCopied: UInt64
        public var elapsed: Duration
    }

    private struct State {
        var report: Report
        var finished: ContinuousClock.Instant?
    }

    private let started = ContinuousClock.now
    private let state: Lock<State>

    init(memoryBytes: UInt64) {
        state = Lock(State(report: Report(phase: .disks, memoryBytes: memoryBytes, memoryBytesScanned: 0,
                                           memoryBytesWritten: 0, diskBytesCopied: 0, elapsed: .zero)))
    }

    public var current: Report {
        state.withLock { s in
            var r = s.report
            r.elapsed = (s.finished ?? ContinuousClock.now) - started
            return r
        }
    }

    func memory(scanned: UInt64, written: UInt64) {
        state.withLock {
            $0.report.memoryBytesScanned = scanned
            $0.report.memoryBytesWritten = written
        }
    }

    func enter(_ phase: Phase) {
        state.withLock {
            $0.report.phase = phase
            if phase == .done || phase == .failed { $0.finished = ContinuousClock.now }
        }
    }

    func disks(copied: UInt64) {
        state.withLock { $0.report.diskBytesCopied = copied }
    }
}
