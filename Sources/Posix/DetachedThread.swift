/// Starts short-lived helper threads nobody joins (progress pollers, the network
/// announce after migration) — what Foundation's `Thread.detachNewThread` did.
/// The VMM's long-lived threads are `JoinableThread`s (Events) instead.
public enum DetachedThread {
    /// Runs `body` on a new detached thread named `name` (Linux keeps 15 characters).
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) throws {
        _ = try NamedThread.start(name: name, detached: true, body)
    }
}
