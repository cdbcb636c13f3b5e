import Posix
#if canImport(Glibc)
import Glibc
#endif

/// Auto-converge: takes a share of every 20 ms from the vCPUs (parks them on
/// the gate for that long), so a guest that dirties memory faster than the
/// link can carry slows down until pre-copy converges. Runs on its own thread
/// from `start` to `stop`; the share rises step by step with `raise()`.
// Sound because: `percent`, `running` and `looping` are read and written only with `condition` locked; `kick` only signals threads.
final class VCPUThrottle: @unchecked Sendable {
    private let gate: VCPUGate
    private let kick: () -> Void
    private let condition = ThreadCondition()
    private var percent = 0
    private var running = false
    private var looping = false
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
                looping = true
                do {
                    try DetachedThread.start(name: "vcpu-throttle") { [self] in loop() }
                } catch {
                    // No thread, no throttling: pre-copy goes on and switches over at its bounds.
                    running = false
                    looping = false
                }
            }
        }
    }

    /// Ends throttling and leaves the vCPUs running; returns once the thread is done.
    func stop() {
        condition.lock()
        let wasRunning = running
        running = false
        condition.broadcast()
        while looping && wasRunning { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        condition.lock()
        while running {
            let off = Self.period * Double(percent) / 100
            condition.unlock()
            gate.set(.pause)
            kick()
            usleep(useconds_t(off * 1_000_000))
            gate.set(.run)
            condition.lock()
            if running { condition.wait(seconds: Self.period - off) }
        }
        looping = false
        condition.broadcast()
        condition.unlock()
    }
}
