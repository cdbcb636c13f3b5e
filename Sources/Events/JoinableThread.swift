import CKVM
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
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if stackSize > 0 { pthread_attr_setstacksize(&attributes, max(stackSize, Int(PTHREAD_STACK_MIN))) }
        let box = Unmanaged.passRetained(Body(name: name, body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attributes, { context in
            let body = Unmanaged<Body>.fromOpaque(context!).takeRetainedValue()
            body.name.withCString { _ = ckvm_set_thread_name($0) }
            body.run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Body>.fromOpaque(box).release()
            throw SystemCallError("pthread_create(\(name))", errno: rc)
        }
        handle = thread
    }

    /// The thread, for `pthread_kill`. Valid until `join()` returns: a joinable
    /// thread's ID stays valid after it exits, until it is joined.
    public var pthread: pthread_t { handle }

    /// Waits for the thread to return. Call once, from another thread.
    public func join() {
        precondition(!joined.exchange(true, ordering: .relaxed), "thread joined twice")
        pthread_join(handle, nil)
    }

    private final class Body {
        let name: String
        let run: @Sendable () -> Void
        init(name: String, _ run: @escaping @Sendable () -> Void) {
            self.name = String(name.utf8.prefix(15)) ?? "skiff"
            self.run = run
        }
    }
}
