import API
import Foundation
import Synchronization

/// A `VMControl` with the state rules the real VMM will have (pause only when running,
/// resume only when paused, nothing after shutdown), optional slowness and failures,
/// and a log of the calls that reached it.
final class FakeVM: VMControl {
    private struct Guarded {
        var state = VMInfo.stateRunning
        var calls: [String] = []
        var infoCalls = 0
        var pauseDelay: Double = 0
        var rebootFailure: (any Error)?
    }
    private let guarded = Mutex(Guarded())
    /// Seconds `pause()` takes (a slow transition).
    var pauseDelay: Double {
        get { guarded.withLock { $0.pauseDelay } }
        set { guarded.withLock { $0.pauseDelay = newValue } }
    }
    /// Thrown by `reboot()` when set (to test 500 and other mappings).
    var rebootFailure: (any Error)? {
        get { guarded.withLock { $0.rebootFailure } }
        set { guarded.withLock { $0.rebootFailure = newValue } }
    }

    var state: String { guarded.withLock { $0.state } }
    var calls: [String] { guarded.withLock { $0.calls } }

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
    var infoCalls: Int { guarded.withLock { $0.infoCalls } }

    func info() -> VMInfo {
        guarded.withLock {
            $0.infoCalls += 1
            return VMInfo(state: $0.state, config: Self.config, counters: ["uptime_ms": 1234, "exits": UInt64($0.calls.count)])
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
        try guarded.withLock {
            guard $0.state != VMInfo.stateShutdown else { throw ControlError(.conflict, "the VM is already shut down") }
            $0.state = VMInfo.stateShutdown
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

    private func record(_ call: String) { guarded.withLock { $0.calls.append(call) } }

    private func transition(from: String, to: String, else message: (String) -> String) throws {
        try guarded.withLock {
            guard $0.state == from else { throw ControlError(.conflict, message($0.state)) }
            $0.state = to
        }
    }
}

/// A VM that implements the snapshot and restore requests, to show a route
/// leaves 501 by the VMM alone (and to serve them as the spec documents).
final class SnapshottingVM: VMControl {
    let base = FakeVM()
    private let _destinations = Mutex<[String]>([])
    var destinations: [String] { _destinations.withLock { $0 } }

    func ping() -> PingInfo { base.ping() }
    func info() -> VMInfo { base.info() }
    func pause() throws { try base.pause() }
    func resume() throws { try base.resume() }
    func shutdown() throws { try base.shutdown() }
    func reboot() throws { try base.reboot() }
    func shutdownVMM() throws { try base.shutdownVMM() }
    func snapshot(_ request: SnapshotRequest) throws {
        _destinations.withLock { $0.append(request.destinationURL) }
    }
    func restore(_ request: RestoreRequest) throws {
        _destinations.withLock { $0.append(request.sourceURL) }
    }
}
