import API
import Dispatch
import Posix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `skiff snapshot` on a terminal: while the request runs, polls `vm.info`
/// over its own connection every 200 ms and redraws one line on stderr with
/// the snapshot's progress (phase, RAM scanned and written, rate).
final class SnapshotProgressLine: Sendable {
    private let client: APIClient
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    init(client: APIClient) {
        self.client = client
        do {
            try DetachedThread.start(name: "skiff-progress") { [self] in poll() }
        } catch {
            done.signal()  // no progress line; `finish` must not wait for it
        }
    }

    private func poll() {
        while !stopped.load(ordering: .acquiring) {
            if let info = try? client.info(), info.state == VMInfo.stateSnapshotting, let p = info.snapshot {
                StandardError.write("\r\u{1B}[K" + p.line)
            }
            usleep(200_000)
        }
        // The summary: the last snapshot's figures ("done" or "failed").
        if let p = try? client.info().snapshot, p.phase == "done" || p.phase == "failed" {
            StandardError.write("\r\u{1B}[K" + p.line + "\n")
        }
        done.signal()
    }

    /// Stops polling and ends with the final figures.
    func finish() {
        stopped.store(true, ordering: .releasing)
        done.wait()
    }
}
