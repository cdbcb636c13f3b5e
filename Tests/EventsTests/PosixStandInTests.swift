import Posix
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The small stand-ins for Foundation's NSLock, NSCondition, Thread and
/// String(format:) that `skiff` uses since it no longer links Foundation.
struct PosixStandInTests {
    private final class Counter: @unchecked Sendable {
        let lock = ThreadLock()
        var value = 0  // only with `lock` held
    }

    /// Four threads released together, 100,000 read-modify-writes each: the lock
    /// must make every one count (without it, this loses increments).
    @Test func threadLockExcludes() throws {
        let counter = Counter()
        let ready = Atomic<Int>(0)
        let finished = Atomic<Int>(0)
        for i in 0..<4 {
            try DetachedThread.start(name: "lock-test-\(i)") {
                ready.add(1, ordering: .releasing)
                while ready.load(ordering: .acquiring) < 4 { sched_yield() }
                for _ in 0..<100_000 {
                    counter.lock.withLock {
                        let v = counter.value
                        if v % 64 == 0 { sched_yield() }  // widen the window a missing lock would leave
                        counter.value = v + 1
                    }
                }
                finished.add(1, ordering: .releasing)
            }
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while finished.load(ordering: .acquiring) < 4, ContinuousClock.now < deadline { usleep(1000) }
        #expect(finished.load(ordering: .acquiring) == 4)
        #expect(counter.lock.withLock { counter.value } == 400_000)
    }

    private final class Flag: @unchecked Sendable {
        let condition = ThreadCondition()
        var set = false  // only with `condition` locked
        var threadName = ""
    }

    /// A timed wait with nobody signalling times out after about its time; a
    /// broadcast from another thread ends a wait early.
    @Test func conditionTimesOutAndWakes() throws {
        let flag = Flag()
        let start = ContinuousClock.now
        flag.condition.lock()
        let signalled = flag.condition.wait(seconds: 0.05)
        flag.condition.unlock()
        #expect(!signalled)
        #expect(ContinuousClock.now - start >= .milliseconds(45))

        try DetachedThread.start(name: "skiff-cond-test") {
            var name = [UInt8](repeating: 0, count: 32)
            let fd = open("/proc/thread-self/comm", O_RDONLY)
            let n = fd >= 0 ? read(fd, &name, name.count) : -1
            if fd >= 0 { close(fd) }
            usleep(20_000)
            flag.condition.withLock {
                flag.threadName = n > 0 ? String(decoding: name[0..<n], as: UTF8.self) : ""
                flag.set = true
                flag.condition.broadcast()
            }
        }
        flag.condition.lock()
        let waitStart = ContinuousClock.now
        while !flag.set, ContinuousClock.now - waitStart < .seconds(30) { flag.condition.wait(seconds: 30) }
        let (set, name) = (flag.set, flag.threadName)
        flag.condition.unlock()
        #expect(set)
        #expect(name == "skiff-cond-test\n")  // named before its body runs
    }

    /// The same text as C's printf, including results longer than the first buffer.
    @Test func cFormatMatchesPrintf() {
        #expect(String(cFormat: "%.3f ms", 1.2345678) == "1.235 ms")
        #expect(String(cFormat: "%.1f MiB", 1.5) == "1.5 MiB")
        #expect(String(cFormat: "%02x", UInt8(7)) + String(cFormat: "%02x", UInt8(0xab)) == "07ab")
        #expect(String(cFormat: "%llu bytes", UInt64.max) == "18446744073709551615 bytes")
        let long = String(cFormat: "%0400d", 5)
        #expect(long.count == 400 && long.hasSuffix("005") && long.hasPrefix("000"))
    }
}
