import CTSan
import Synchronization

/// A `Synchronization.Mutex` that ThreadSanitizer understands; use it instead of `Mutex`.
///
/// Why: on Linux, `Mutex` hands the lock from one thread to the next through a futex in the
/// standard library's uninstrumented slow path, so under contention TSan sees no
/// happens-before edge between two critical sections and reports a false data race
/// (docs/security.md, Sanitizers). `withLock` tells TSan about the edge itself: acquire
/// right after taking the mutex, release right before giving it up, keyed by the lock's
/// address. In a build without TSan both calls do nothing.
public struct Lock<Value: ~Copyable>: ~Copyable {
    @usableFromInline
    let mutex: Mutex<Value>

    @inlinable
    public init(_ initialValue: consuming sending Value) {
        mutex = Mutex(initialValue)
    }

    /// Runs `body` with the value, holding the lock; the same contract as `Mutex.withLock`.
    @inlinable
    public borrowing func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        // The lock's own address: only a key for TSan's synchronisation object, never
        // dereferenced. Taken outside the critical section because touching `value`
        // before the acquire would itself be reported (an inout access is instrumented).
        let key = withUnsafePointer(to: self) { UnsafeRawPointer($0) }
        return try mutex.withLock { (value: inout sending Value) throws(E) -> sending Result in
            skiff_tsan_acquire(key)
            defer { skiff_tsan_release(key) }
            return try body(&value)
        }
    }
}

extension Lock: Sendable where Value: ~Copyable {}
