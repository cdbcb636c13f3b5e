import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Starting a named POSIX thread: what `JoinableThread` (Events) and
/// `DetachedThread` share. The body is handed over retained and released by the
/// thread (or here, if the thread could not be created).
public enum NamedThread {
    /// Starts `body` on a new thread named `name` (Linux keeps 15 characters).
    /// `stackSize` 0 keeps the system default.
    public static func start(name: String, stackSize: Int = 0, detached: Bool,
                             _ body: @escaping @Sendable () -> Void) throws -> pthread_t {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if stackSize > 0 { pthread_attr_setstacksize(&attributes, max(stackSize, Int(PTHREAD_STACK_MIN))) }
        if detached { pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED)) }
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
        return thread
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
