import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Starts short-lived helper threads nobody joins (progress pollers, the network
/// announce after migration) — what Foundation's `Thread.detachNewThread` did.
/// The VMM's long-lived threads are `JoinableThread`s (Events) instead.
public enum DetachedThread {
    /// Runs `body` on a new detached thread named `name` (Linux keeps 15 characters).
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) throws {
        let box = Unmanaged.passRetained(Body(name: name, body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
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
