import Foundation

/// Auto-converge: takes a share of every 20 ms from the vCPUs (parks them on
/// the gate for that long), so a guest that dirties memory faster than the
/// link can carry slows down until pre-copy converges. Runs on its own thread
/// from `start` to `stop`; the share rises step by step with `raise()`.
// Sound because: `percent`, `running` and `thread` are read and written only with `condition` locked; `kick` only signals threads.
final class VCPUThrottle: @unchecked Sendable {
    private let gate: VCPUGate
    private let kick: () -> Void
    private let condition = NSCondition()
    private var percent = 0
    private var running = false
    private var thread: Thread?
    private static let period = 0.020

    /// QEMU's steps: 20 % first, then +10 % a step, at most 99 %.
    static let firstStep = 20, step = 10, maximum = 99

    init(gate: VCPUGate, kick: @escaping () -> Void) {
        self.gate = gate
        self.kick = kick
    }

    var share: Int { condition.withLock { percent } }

    /// One step up; starts the thread on the first.
    func raise() {
        condition.withLock {
            percent = percent == 0 ? Self.firstStep : min(Self.maximum, percent + Self.step)
            if !running {
                running = true
                let t = Thread { [self] in loop() }
                t.name = "vcpu-throttle"
                thread = t
                t.start()
            }
        }
    }

    /// Ends throttling and leaves the vCPUs running; returns once the thread is done.
    func stop() {
        condition.lock()
        let wasRunning = running
        running = false
        condition.broadcast()
        while thread != nil && wasRunning { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        condition.lock()
        while running {
            let off = Self.period * Double(percent) / 100
            condition.unlock()
            gate.set(.pause)
            kick()
            Thread.sleep(forTimeInterval: off)
            gate.set(.run)
            condition.lock()
            if running { _ = condition.wait(until: Date().addingTimeInterval(Self.period - off)) }
        }
        thread = nil
        condition.broadcast()
        condition.unlock()
    }
}
