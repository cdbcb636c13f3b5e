import Posix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A POSIX thread that must be joined: the VMM's long-lived threads (vCPUs, the
/// device event loop) are waited for at teardown, so nothing they touch is
/// released, closed or exited from under them. Foundation's `Thread` is detached
/// and cannot be joined.
public final class JoinableThread: Sendable {
    private let handle: pthread_t
    private let joined = Atomic<Bool>(false)

    /// Starts `body` on a new thread named `name` (Linux keeps 15 characters).
    /// `stackSize` 0 keeps the system default.
    public init(name: String, stackSize: Int = 0, _ body: @escaping @Sendable () -> Void) throws {
        handle = try NamedThread.start(name: name, stackSize: stackSize, detached: false, body)
    }

    /// The thread, for `pthread_kill`. Valid until `join()` returns: a joinable
    /// thread's ID stays valid after it exits, until it is joined.
    public var pthread: pthread_t { handle }

    /// Waits for the thread to return. Call once, from another thread.
    public func join() {
        precondition(!joined.exchange(true, ordering: .relaxed), "thread joined twice")
        pthread_join(handle, nil)
    }
}
