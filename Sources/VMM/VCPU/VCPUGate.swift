import Posix

/// What every vCPU thread is asked to do, and the place where paused threads
/// park. One gate serves all vCPUs of a machine: a request is set here, the
/// threads are kicked out of KVM_RUN, and each reads the request before its
/// next KVM_RUN — so a request is never missed, however the kick races the run.
// Sound because: `request` and `parked` are read and written only with `condition` locked.
final class VCPUGate: @unchecked Sendable {
    enum Request: Equatable { case run, pause, stop }

    private let condition = ThreadCondition()
    private var request = Request.run
    private var parked = 0

    /// Called by a vCPU thread before each KVM_RUN. Blocks (no spinning) while a
    /// pause is requested; returns false when the thread must stop.
    func shouldRun() -> Bool {
        condition.lock(); defer { condition.unlock() }
        if request == .pause {
            parked += 1
            condition.broadcast()
            while request == .pause { condition.wait() }
            parked -= 1
        }
        return request == .run
    }

    /// Sets the request for all vCPUs; `stop` is final.
    func set(_ new: Request) {
        condition.lock(); defer { condition.unlock() }
        guard request != .stop else { return }
        request = new
        condition.broadcast()
    }

    var current: Request {
        condition.lock(); defer { condition.unlock() }
        return request
    }

    /// Waits until `count` threads are parked (or the gate was stopped meanwhile).
    /// Returns true when they all are.
    func waitUntilParked(_ count: Int) -> Bool {
        condition.lock(); defer { condition.unlock() }
        while parked < count && request == .pause { condition.wait() }
        return request == .pause && parked >= count
    }
}
