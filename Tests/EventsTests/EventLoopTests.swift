import Foundation
import Posix
import Synchronization
import Testing
@testable import Events

struct EventLoopTests {
    /// `stop` + `join` return only after the loop thread is gone, and every
    /// handler that ran did so before `join` returned.
    @Test func joinWaitsForTheLoopThread() throws {
        let loop = try EventLoop()
        let ran = Atomic<Int>(0)
        try loop.start(name: "test-join")
        for _ in 0..<100 { loop.execute { ran.add(1, ordering: .relaxed) } }
        loop.stop()
        loop.join()
        let after = ran.load(ordering: .relaxed)
        #expect(after == 100)
        loop.execute { ran.add(1, ordering: .relaxed) }  // queued, never run: the loop is gone
        usleep(20_000)
        #expect(ran.load(ordering: .relaxed) == after)
    }

    /// An epoll failure must not leave the VM running with dead devices: the
    /// loop ends and reports it (it used to return silently).
    @Test func anEpollFailureIsReported() throws {
        let loop = try EventLoop()
        let reported = Lock<EventLoop.Failure?>(nil)
        let done = DispatchSemaphore(value: 0)
        loop.onFailure = { failure in
            reported.withLock { $0 = failure }
            done.signal()
        }
        try loop.start(name: "test-fail")
        // Swap the epoll fd for a plain file: the next epoll_wait fails with EINVAL.
        let null = open("/dev/null", O_RDONLY)
        #expect(dup2(null, loop.epollFD) == loop.epollFD)
        close(null)
        loop.execute {}  // wakes the wait in progress, which still used the old epoll
        #expect(done.wait(timeout: .now() + 5) == .success, "the loop did not report the failure")
        loop.join()
        let failure = reported.withLock { $0 }
        #expect(failure?.operation == "epoll_wait")
        #expect(failure?.errno == EINVAL)
    }

    /// `start` returns only once `onStart` has run, so the VMM's I/O threads and
    /// the loop's seccomp filter are in place before any vCPU runs guest code;
    /// and an `onStart` that throws ends the loop without leaving `start` waiting.
    @Test func startReturnsAfterOnStart() throws {
        let loop = try EventLoop()
        let finished = Atomic<Bool>(false)
        try loop.start(name: "test-onstart") {
            usleep(50_000)  // longer than a thread takes to start, even on a busy host
            finished.store(true, ordering: .releasing)
        }
        let finishedBeforeReturn = finished.load(ordering: .acquiring)
        #expect(finishedBeforeReturn)
        loop.stop()
        loop.join()

        let failing = try EventLoop()
        let reported = Atomic<Bool>(false)
        failing.onFailure = { _ in reported.store(true, ordering: .releasing) }
        try failing.start(name: "test-onstart2") { throw EventLoop.Failure("on start", errno: EPERM) }
        failing.join()  // the loop ended by itself
        let wasReported = reported.load(ordering: .acquiring)
        #expect(wasReported)
    }
}
