import CTSan
import Events
import Posix
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Posix's `Lock` under contention. In a normal build this checks mutual exclusion (an
/// exact count); under `scripts/sanitize.sh thread --filter LockTests` it is also the
/// reproducer for the false race that a plain `Synchronization.Mutex` shows under TSan
/// (docs/security.md, Sanitizers): with `Lock` there must be no report.
struct LockTests {
    private final class Shared: Sendable {
        struct State {
            var count = 0
            var log: [Int] = []
        }
        let state = Lock(State())
    }

    @Test func fourContendingThreadsLoseNoUpdate() throws {
        let threads = 4, rounds = 50_000
        let shared = Shared()
        let workers = try (0..<threads).map { index in
            try JoinableThread(name: "lock-test-\(index)") {
                for round in 0..<rounds {
                    shared.state.withLock { state in
                        state.count += 1
                        state.log.append(round)  // a plain array: TSan checks its buffer accesses
                    }
                }
            }
        }
        for worker in workers { worker.join() }
        let (count, logged) = shared.state.withLock { ($0.count, $0.log.count) }
        #expect(count == threads * rounds)
        #expect(logged == threads * rounds)
    }

    /// Errors thrown in the body come out typed, and the lock is released after them.
    @Test func aThrowingBodyReleasesTheLock() {
        struct Refused: Error {}
        let lock = Lock(0)
        #expect(throws: Refused.self) {
            try lock.withLock { (value: inout Int) throws(Refused) in
                value = 1
                throw Refused()
            }
        }
        #expect(lock.withLock { $0 } == 1)
    }

    /// The annotations are live exactly when the TSan runtime is in the process: a
    /// sanitized build whose C shim was compiled without -fsanitize=thread would
    /// silently bring the false reports back.
    @Test func annotationsAreOnExactlyUnderThreadSanitizer() {
        let tsanRuntime = dlsym(nil, "__tsan_acquire") != nil  // nil: RTLD_DEFAULT
        #expect((skiff_tsan_enabled() == 1) == tsanRuntime)
    }
}
