import API
import Foundation

/// A `VMControl` with the state rules the real VMM will have (pause only when running,
/// resume only when paused, nothing after shutdown), optional slowness and failures,
/// and a log of the calls that reached it.
final class FakeVM: VMControl, @unchecked Sendable {
    private let lock = NSLock()
    private var _state = VMInfo.stateRunning
    private var _calls: [String] = []
    /// Seconds `pause()` takes (a slow transition).
    var pauseDelay: Double = 0
    /// Thrown by `reboot()` when set (to test 500 and other mappings).
    var rebootFailure: Error?

    var state: String { lock.withLock { _state } }
    var calls: [String] { lock.withLock { _calls } }

    static let config = VMConfigInfo(
        kernel: "/boot/vmlinux", initrd: "/boot/initrd.img", cmdline: "console=ttyS0 reboot=k",
        cpus: .init(bootVCPUs: 2), memory: .init(size: 256 << 20),
        disks: [.init(path: "/images/root.qcow2", readonly: false, format: "qcow2", serial: "root"),
                .init(path: "/images/data.raw", readonly: true, format: "raw")],
        net: [.init(tap: "tap0", mac: "52:54:00:12:34:56")])

    func ping() -> PingInfo {
        PingInfo(buildVersion: "test-build", version: "0.0.0-test", pid: Int64(getpid()), features: ["api"])
    }

    /// How many times `info()` was asked (to see how far the server read a client's requests).
    var infoCalls: Int { lock.withLock { _infoCalls } }
    private var _infoCalls = 0

    func info() -> VMInfo {
        lock.withLock {
            _infoCalls += 1
            return VMInfo(state: _state, config: Self.config, counters: ["uptime_ms": 1234, "exits": UInt64(_calls.count)])
        }
    }

    func pause() throws {
        record("pause")
        if pauseDelay > 0 { Thread.sleep(forTimeInterval: pauseDelay) }
        try transition(from: VMInfo.stateRunning, to: VMInfo.statePaused,
                       else: { $0 == VMInfo.statePaused ? "the VM is already paused" : "the VM is not running (\($0))" })
    }

    func resume() throws {
        record("resume")
        try transition(from: VMInfo.statePaused, to: VMInfo.stateRunning, else: { "the VM is not paused (\($0))" })
    }

    func shutdown() throws {
        record("shutdown")
        try lock.withLock {
            guard _state != VMInfo.stateShutdown else { throw ControlError(.conflict, "the VM is already shut down") }
            _state = VMInfo.stateShutdown
        }
    }

    func reboot() throws {
        record("reboot")
        if let rebootFailure { throw rebootFailure }
        guard state != VMInfo.stateShutdown else { throw ControlError(.conflict, "the VM is shut down") }
    }

    func shutdownVMM() throws {
        record("shutdownVMM")
    }

    private func record(_ call: String) { lock.withLock { _calls.append(call) } }

    private func transition(from: String, to: String, else message: (String) -> String) throws {
        try lock.withLock {
            guard _state == from else { throw ControlError(.conflict, message(_state)) }
            _state = to
        }
    }
}

/// A VM that implements the snapshot and restore requests, to show a route
/// leaves 501 by the VMM alone (and to serve them as the spec documents).
final class SnapshottingVM: VMControl, @unchecked Sendable {
    let base = FakeVM()
    private let lock = NSLock()
    private var _destinations: [String] = []
    var destinations: [String] { lock.withLock { _destinations } }

    func ping() -> PingInfo { base.ping() }
    func info() -> VMInfo { base.info() }
    func pause() throws { try base.pause() }
    func resume() throws { try base.resume() }
    func shutdown() throws { try base.shutdown() }
    func reboot() throws { try base.reboot() }
    func shutdownVMM() throws { try base.shutdownVMM() }
    func snapshot(_ request: SnapshotRequest) throws {
        lock.withLock { _destinations.append(request.destinationURL) }
    }
    func restore(_ request: RestoreRequest) throws {
        lock.withLock { _destinations.append(request.sourceURL) }
    }
}
