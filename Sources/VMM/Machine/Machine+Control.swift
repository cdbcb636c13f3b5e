import Logging

/// Pause, resume and the other requests of the control plane. Each runs on the
/// caller's thread (the API's), one at a time (`control`), and changes the run
/// state only through `lifecycle`.
extension Machine {
    /// What a pause measured, for logs and `vm.info`.
    public struct PauseTiming: Sendable {
        /// Request → every vCPU out of KVM_RUN and parked.
        public var vcpusParked: Duration
        /// Request → devices quiet too (disk requests in flight completed).
        public var total: Duration
    }

    /// The run state now.
    public var runState: VMRunState { lock.withLock { lifecycle.state } }

    /// Stops the guest where it is: every vCPU out of KVM_RUN and parked on the
    /// gate (blocked, not spinning), the guest's kvmclock told so (no soft-lockup
    /// reports afterwards) and each one's last I/O instruction completed (state
    /// read now is consistent), then the event loop drains each device's requests in
    /// flight and parks. When this returns, guest memory and device state do not
    /// change until `resume()`.
    @discardableResult
    public func pause() throws -> PauseTiming {
        try control.withLock {
            try lock.withLock { try lifecycle.move(to: .paused) }
            let start = ContinuousClock.now
            gate.set(.pause)
            for t in vcpuThreads { t.kick() }
            guard gate.waitUntilParked(vcpuThreads.count) else {
                throw LifecycleError(from: .paused, to: .shuttingDown)
            }
            let parked = ContinuousClock.now - start
            // A vCPU parked right after an I/O exit has not finished that
            // instruction; finish it so the saved state does not replay it.
            for t in vcpuThreads {
                do { try t.vcpu.completePendingIO() } catch { log.error("pause: \(error)") }
            }
            for t in vcpuThreads { _ = try? t.vcpu.notifyHostPause() }
            let transports = virtio.transports
            guard events.park(after: { for t in transports { t.quiesce() } }) else {
                throw LifecycleError(from: .paused, to: .shuttingDown)
            }
            let timing = PauseTiming(vcpusParked: parked, total: ContinuousClock.now - start)
            log.info("paused: vCPUs parked in \(Self.milliseconds(timing.vcpusParked)), devices quiet in \(Self.milliseconds(timing.total))")
            return timing
        }
    }

    /// Undoes `pause()`: devices first, so the vCPUs' first notifications are served.
    public func resume() throws {
        try control.withLock {
            try lock.withLock { try lifecycle.move(to: .running) }
            events.unpark()
            gate.set(.run)
            log.info("resumed")
        }
    }

    /// Ends the VM as a power-off would (`vm.shutdown`); `run()` returns `.shutDownByRequest`.
    public func requestShutdown() throws {
        let state = runState
        guard state != .shuttingDown && state != .stopped else {
            throw LifecycleError(from: state, to: .shuttingDown)
        }
        stop(.shutDownByRequest)
    }

    /// Ends this boot of the VM (`vm.reboot`); `run()` returns `.rebootRequested`
    /// and the caller builds and boots the same config again.
    public func requestReboot() throws {
        let state = runState
        guard state == .running || state == .paused else {
            throw LifecycleError(from: state, to: .shuttingDown)
        }
        stop(.rebootRequested)
    }

    /// Seconds since the vCPUs started, and KVM exits handled by all vCPUs.
    public var counters: (uptime: Duration, exits: UInt64) {
        let uptime = lock.withLock { startedAt.map { ContinuousClock.now - $0 } ?? .zero }
        return (uptime, vcpuThreads.reduce(0) { $0 + $1.exits.load(ordering: .relaxed) })
    }
}
