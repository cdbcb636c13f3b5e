#if canImport(Glibc)
import Glibc
#endif

/// A plain pthread mutex with `lock()`/`unlock()`, for code that holds a lock across
/// calls or guards state spread over several properties (what Foundation's `NSLock`
/// did). The `skiff` binary does not link Foundation (docs/performance.md), and
/// `Lock<Value>` only fits state that can live inside the lock. ThreadSanitizer
/// intercepts pthread mutexes, so no annotations are needed.
public final class ThreadLock: @unchecked Sendable {
    // Heap-allocated: a pthread mutex must not move while in use.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init() {
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }

    public func unlock() { pthread_mutex_unlock(mutex) }

    /// Takes the lock only if it is free now (never waits); true if taken.
    public func tryLock() -> Bool { pthread_mutex_trylock(mutex) == 0 }

    /// Runs `body` holding the lock.
    @discardableResult
    public func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
        lock(); defer { unlock() }
        return try body()
    }
}
