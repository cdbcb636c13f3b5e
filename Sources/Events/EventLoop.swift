import CKVM
import Posix
#if canImport(Glibc)
import Glibc
#endif

/// The device event loop: one thread blocked in epoll_wait, calling a handler when
/// its file descriptor (ioeventfd, TAP, the disk engine's eventfd, stdin…) becomes readable.
/// Device I/O happens here, never on a vCPU thread.
///
/// Lifetime: `start()` runs the loop on a joinable thread; `stop()` then `join()`
/// end it, after which no handler runs any more and the devices can be drained
/// and closed from the joining thread. If epoll itself fails the loop ends and
/// calls `onFailure`: every device would be dead, so the VM must end too.
public final class EventLoop: Sendable {
    public typealias Handler = @Sendable (_ events: UInt32) -> Void

    /// What `onFailure` receives: the epoll call that failed and its errno.
    public typealias Failure = SystemCallError

    let epollFD: Int32  // internal for the failure test
    private let wake: EventFD
    /// Everything the loop thread and its callers share, behind one lock held only
    /// to copy a value in or out (never while a handler runs).
    private struct Shared {
        /// Indexed by descriptor (they are small and dense). An array, not a dictionary:
        /// the first `[Int32: …]` of a process costs 0.4 M instructions of runtime type
        /// look-ups at start-up, and the loop looks a handler up for every event.
        var handlers: [Handler?] = []
        var pending: [@Sendable () -> Void] = []
        var thread: JoinableThread?
        var stopping = false
        var onFailure: (@Sendable (Failure) -> Void)?
    }
    private let shared = Lock(Shared())
    /// Called on the loop thread when the loop ends because epoll failed.
    public var onFailure: (@Sendable (Failure) -> Void)? {
        get { shared.withLock { $0.onFailure } }
        set { shared.withLock { $0.onFailure = newValue } }
    }
    /// Parking (VM pause): the loop thread waits here, running no handler.
    private let parking = ThreadCondition()
    private struct Parking {
        /// `onStart` has returned (or thrown): set once, before any handler runs.
        var started = false
        var held = false
        var parked = false
        var ended = false
    }
    nonisolated(unsafe) private var parkState = Parking()  // Sound because: read and written only with `parking` locked.

    public init() throws {
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epollFD >= 0 else { throw Failure("epoll_create1", errno: errno) }
        wake = try EventFD("event loop wake-up")
        try add(wake.fileDescriptor) { [unowned self] _ in self.drainWake() }
    }

    deinit { close(epollFD) }

    /// Watches `fd` for input (`events` defaults to EPOLLIN).
    public func add(_ fd: Int32, events: UInt32 = UInt32(EPOLLIN.rawValue), handler: @escaping Handler) throws {
        guard fd >= 0 else { throw Failure("epoll_ctl(ADD, \(fd))", errno: EBADF) }
        shared.withLock {
            if $0.handlers.count <= Int(fd) { $0.handlers += Array(repeating: nil, count: Int(fd) + 1 - $0.handlers.count) }
            $0.handlers[Int(fd)] = handler
        }
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else {
            let e = errno
            shared.withLock { $0.handlers[Int(fd)] = nil }
            throw Failure("epoll_ctl(ADD, \(fd))", errno: e)
        }
    }

    /// Changes the events watched on `fd` (e.g. add EPOLLOUT while a queue is full).
    public func modify(_ fd: Int32, events: UInt32) throws {
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        guard epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event) == 0 else {
            throw Failure("epoll_ctl(MOD, \(fd))", errno: errno)
        }
    }

    public func remove(_ fd: Int32) {
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        shared.withLock { if fd >= 0, Int(fd) < $0.handlers.count { $0.handlers[Int(fd)] = nil } }
    }

    /// Runs `work` on the loop thread (for state changes that must not race device I/O).
    public func execute(_ work: @escaping @Sendable () -> Void) {
        shared.withLock { $0.pending.append(work) }
        wake.signal()
    }

    /// Starts the loop on its own (joinable) thread. `onStart` runs first on that
    /// thread (the VMM loads the thread's seccomp filter there); if it throws, the
    /// loop ends through `onFailure` without running a handler. Returns once
    /// `onStart` has: what it sets up (the disks' I/O threads, the filters) is in
    /// place before the caller lets a guest run.
    public func start(name: String = "skiff-events", onStart: @escaping @Sendable () throws -> Void = {}) throws {
        precondition(shared.withLock { $0.thread == nil }, "event loop started twice")
        let thread = try JoinableThread(name: name) { [self] in
            do {
                do {
                    defer { parking.lock(); parkState.started = true; parking.broadcast(); parking.unlock() }
                    try onStart()
                }
                try run()
            } catch let failure as Failure {
                onFailure?(failure)
            } catch {
                onFailure?(Failure("\(error)", errno: 0))
            }
            parking.lock(); parkState.ended = true; parking.broadcast(); parking.unlock()
        }
        shared.withLock { $0.thread = thread }
        parking.lock(); defer { parking.unlock() }
        while !parkState.started { parking.wait() }
    }

    /// Runs `work` on the loop thread, then holds the thread there — no handler
    /// runs, so no virtqueue, TAP or disk completion is touched — until
    /// `unpark()`. Returns once the thread is held (true), or false if the loop
    /// is not running. For pausing the VM: state read while parked is stable.
    @discardableResult
    public func park(after work: @escaping @Sendable () -> Void) -> Bool {
        guard shared.withLock({ $0.thread != nil }) else { return false }
        parking.lock()
        guard !parkState.ended, !parkState.held else {
            defer { parking.unlock() }
            return !parkState.ended && parkState.parked
        }
        parkState.held = true
        parking.unlock()
        execute { [self] in
            work()
            parking.lock()
            parkState.parked = true
            parking.broadcast()
            while parkState.held { parking.wait() }
            parkState.parked = false
            parking.unlock()
        }
        parking.lock(); defer { parking.unlock() }
        while !parkState.parked && !parkState.ended { parking.wait() }
        return parkState.parked
    }

    /// Lets a parked loop run again.
    public func unpark() {
        parking.lock()
        parkState.held = false
        parking.broadcast()
        parking.unlock()
    }

    /// Asks the loop to return after the current round (from any thread).
    public func stop() {
        execute { [self] in shared.withLock { $0.stopping = true } }
    }

    /// Waits until the loop thread started by `start()` has returned; call after
    /// `stop()`. A no-op when the loop was never started.
    public func join() {
        shared.withLock { s in defer { s.thread = nil }; return s.thread }?.join()
    }

    /// Runs the loop on the calling thread until `stop()`; throws if epoll fails.
    public func run() throws {
        var events = [epoll_event](repeating: epoll_event(), count: 32)
        while true {
            let n = epoll_wait(epollFD, &events, Int32(events.count), -1)
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure("epoll_wait", errno: errno)
            }
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                let handler = shared.withLock { fd >= 0 && Int(fd) < $0.handlers.count ? $0.handlers[Int(fd)] : nil }
                handler?(events[i].events)
            }
            if shared.withLock({ $0.stopping }) { return }
        }
    }

    private func drainWake() {
        wake.consume()
        let work = shared.withLock { s in defer { s.pending.removeAll() }; return s.pending }
        for w in work { w() }
    }
}
