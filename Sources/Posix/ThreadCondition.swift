#if canImport(Glibc)
import Glibc
#endif

/// A mutex and a condition variable (what Foundation's `NSCondition` did): `lock()`,
/// then `wait()` in a loop over the predicate, `broadcast()` after changing it.
/// Timed waits run on CLOCK_MONOTONIC, so a wall-clock step cannot stretch them.
public final class ThreadCondition: @unchecked Sendable {
    // Heap-allocated: pthread objects must not move while in use.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }

    public func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs `body` holding the lock.
    @discardableResult
    public func withLock<Result>(_ body: () throws -> Result) rethrows -> Result {
        lock(); defer { unlock() }
        return try body()
    }

    /// Waits for a signal; call holding the lock (which is released while waiting).
    public func wait() { pthread_cond_wait(cond, mutex) }

    /// Waits for a signal at most `seconds`; false when the time ran out.
    /// Call holding the lock.
    @discardableResult
    public func wait(seconds: Double) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let nanoseconds = Int(max(0, seconds) * 1e9) + deadline.tv_nsec
        deadline.tv_sec += nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        return pthread_cond_timedwait(cond, mutex, &deadline) == 0
    }

    public func signal() { pthread_cond_signal(cond) }

    public func broadcast() { pthread_cond_broadcast(cond) }
}
