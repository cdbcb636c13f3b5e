import Foundation

/// How far a snapshot has got, updated by the thread writing it and read by
/// the control API (`vm.info`), so a client can show progress for a large
/// guest. One per snapshot; the machine keeps the last.
public final class SnapshotProgress: @unchecked Sendable {
    // @unchecked: every field is read and written under `lock`.
    public enum Phase: String, Sendable { case disks, memory, state, done, failed }

    public struct Report: Sendable, Equatable {
        public var phase: Phase
        public var memoryBytes: UInt64
        public var memoryBytesScanned: UInt64
        public var memoryBytesWritten: UInt64
        public var diskBytesCopied: UInt64
        public var elapsed: Duration
    }

    private let lock = NSLock()
    private let started = ContinuousClock.now
    private var report: Report
    private var finished: ContinuousClock.Instant?

    init(memoryBytes: UInt64) {
        report = Report(phase: .disks, memoryBytes: memoryBytes, memoryBytesScanned: 0, memoryBytesWritten: 0,
                        diskBytesCopied: 0, elapsed: .zero)
    }

    public var current: Report {
        lock.withLock {
            var r = report
            r.elapsed = (finished ?? ContinuousClock.now) - started
            return r
        }
    }

    func memory(scanned: UInt64, written: UInt64) {
        lock.withLock {
            report.memoryBytesScanned = scanned
            report.memoryBytesWritten = written
        }
    }

    func enter(_ phase: Phase) {
        lock.withLock {
            report.phase = phase
            if phase == .done || phase == .failed { finished = ContinuousClock.now }
        }
    }

    func disks(copied: UInt64) {
        lock.withLock { report.diskBytesCopied = copied }
    }
}
