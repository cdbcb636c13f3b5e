import API
import Foundation
import Synchronization

/// `skiff snapshot` on a terminal: while the request runs, polls `vm.info`
/// over its own connection every 200 ms and redraws one line on stderr with
/// the snapshot's progress (phase, RAM scanned and written, rate).
final class SnapshotProgressLine: Sendable {
    private let client: APIClient
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    init(client: APIClient) {
        self.client = client
        Thread.detachNewThread { [self] in poll() }
    }

    private func poll() {
        while !stopped.load(ordering: .acquiring) {
            if let info = try? client.info(), info.state == VMInfo.stateSnapshotting, let p = info.snapshot {
                FileHandle.standardError.write(Data(("\r\u{1B}[K" + p.line).utf8))
            }
            usleep(200_000)
        }
        // The summary: the last snapshot's figures ("done" or "failed").
        if let p = try? client.info().snapshot, p.phase == "done" || p.phase == "failed" {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + p.line + "\n").utf8))
        }
        done.signal()
    }

    /// Stops polling and ends with the final figures.
    func finish() {
        stopped.store(true, ordering: .releasing)
        done.wait()
    }
}
