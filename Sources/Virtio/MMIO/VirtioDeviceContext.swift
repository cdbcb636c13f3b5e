import CKVM
import Devices
import Events
import GuestMemory
import Posix

/// What an activated device may use: guest memory, its queues, the negotiated
/// features, interrupts, and watches on the event loop. Created by the transport at
/// DRIVER_OK and dropped at reset; after that every call here is a no-op, so a late
/// completion cannot touch a queue the driver has since torn down.
///
/// All methods must be called with the device lock held (true in every device
/// callback and in handlers registered with `watch`).
// Sound because: `watched`, `isActive` and the queues are used only with the device lock held (above); the rest is `let`.
public final class VirtioDeviceContext: @unchecked Sendable {
    public let memory: GuestMemory
    public let queues: [SplitQueue]
    /// Features the driver accepted (device bits and ring bits).
    public let features: UInt64
    public let eventLoop: EventLoop
    private unowned let transport: VirtioMMIOTransport
    /// The transport's device lock, held strongly: `tryLocked` runs on threads
    /// that may still hold this context while the transport goes away.
    private let deviceLock: ThreadLock
    private var watched: [Int32] = []
    public private(set) var isActive = true

    init(transport: VirtioMMIOTransport, memory: GuestMemory, queues: [SplitQueue], features: UInt64, eventLoop: EventLoop) {
        self.transport = transport
        deviceLock = transport.lock
        self.memory = memory
        self.queues = queues
        self.features = features
        self.eventLoop = eventLoop
    }

    public func hasFeature(_ bit: UInt64) -> Bool { features & bit == bit }

    /// Sends a used-buffer interrupt for `queue` unless the driver suppressed it.
    public func signalUsed(queue: Int) {
        guard isActive else { return }
        do {
            if try queues[queue].needsNotification() { transport.raiseInterrupt(VirtioMMIOTransport.interruptUsedBuffer) }
        } catch {
            deviceNeedsReset("queue \(queue): \(error)")
        }
    }

    /// Marks the device broken (§2.1.2): DEVICE_NEEDS_RESET plus a configuration
    /// change interrupt; no more queue work until the driver resets it.
    public func deviceNeedsReset(_ reason: String) {
        guard isActive else { return }
        transport.markNeedsReset(reason)
    }

    /// Tells the driver the configuration space changed (new generation + interrupt).
    public func configChanged() {
        guard isActive else { return }
        transport.configChanged()
    }

    /// True once the device asked for a reset: stop processing queues.
    public var isBroken: Bool { transport.needsReset }

    /// For a device's own threads (a disk's I/O threads completing requests):
    /// runs `body` with the device lock held and returns true if the lock is free
    /// right now and this context still active; otherwise returns false at once,
    /// running nothing. Never waits: the lock's holder may be waiting for the caller.
    public func tryLocked(_ body: () -> Void) -> Bool {
        guard deviceLock.tryLock() else { return false }
        defer { deviceLock.unlock() }
        guard isActive else { return false }
        body()
        return true
    }

    /// Watches `fd` on the event loop; `handler` runs with the device lock held and
    /// only while this context is active. Removed automatically at reset.
    public func watch(_ fd: Int32, events: UInt32 = UInt32(EPOLLIN.rawValue), handler: @escaping @Sendable (UInt32) -> Void) throws {
        guard isActive else { return }
        let lock = transport.lock
        try eventLoop.add(fd, events: events) { [weak self] ev in
            lock.lock(); defer { lock.unlock() }
            guard let self, self.isActive else { return }
            handler(ev)
        }
        watched.append(fd)
    }

    /// Changes the events watched on `fd` (0 pauses it: back-pressure).
    public func modifyWatch(_ fd: Int32, events: UInt32) throws {
        guard isActive else { return }
        try eventLoop.modify(fd, events: events)
    }

    func deactivate() {
        isActive = false
        for fd in watched { eventLoop.remove(fd) }
        watched.removeAll()
    }
}
