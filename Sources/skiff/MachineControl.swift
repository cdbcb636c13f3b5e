import API
import Dispatch
import Migration
import Posix
import SkiffCLI
import VMM
#if canImport(Glibc)
import Glibc
#endif

/// The control API's view of `skiff run`: it forwards each request to the
/// machine that runs now (a `vm.reboot` builds a new one), and maps lifecycle
/// refusals to 409s.
// Sound because: every `var` is read and written with `lock` held.
final class MachineControl: VMControl, @unchecked Sendable {
    /// The config of the machine attached last; nil while waiting for `vm.restore`.
    private var config: MachineConfig?
    private let lock = ThreadLock()
    private var machine: Machine?
    private var state = VMInfo.stateCreated
    /// Set by `waitForRestore`: `vm.restore` may build a machine, with these
    /// overlay paths and TAP names.
    private var restoreResources: RestoreResources?
    private var restoring = false
    /// What `waitForRestore` is waiting for: a restored machine, or nil to exit.
    private var handedOver: Machine??
    private let handOver = DispatchSemaphore(value: 0)
    /// The migration in progress (or last finished), for `vm.info` counters.
    private var migration: MigrationProgress?
    /// Set while `skiff run --api-socket` waits for a VM: `vm.receive-migration` hands it over here.
    private let incoming: IncomingSlot?

    init(config: MachineConfig?, incoming: IncomingSlot? = nil) {
        self.config = config
        self.incoming = incoming
    }

    /// The machine the requests go to, from `run()` until it returns.
    func attach(_ machine: Machine?) {
        lock.withLock {
            self.machine = machine
            if let machine { config = machine.config }
            if machine == nil { state = VMInfo.stateShutdown }
        }
    }

    /// What an empty `skiff run --api-socket PATH` gets to run.
    enum WaitedVM {
        case restored(Machine)
        case received(IncomingRun.Received)
    }

    /// `skiff run --api-socket PATH` without a kernel: blocks until `vm.restore`
    /// has built a machine (returned, not running yet) or `vm.receive-migration`
    /// has received one, or until `vmm.shutdown` (nil); a termination signal
    /// throws the exit status 128 + signal.
    func waitForVM(resources: RestoreResources, signals: TerminationSignals) throws -> WaitedVM? {
        lock.withLock { restoreResources = resources }
        defer { lock.withLock { restoreResources = nil } }
        while true {
            if handOver.wait(timeout: .now() + .milliseconds(50)) == .success {
                return lock.withLock { handedOver ?? nil }.map { .restored($0) }
            }
            if let received = incoming?.take() { return .received(received) }
            if let signal = signals.take() {
                // A vm.restore being built now is dropped with this process.
                throw ExitCode(128 + signal)
            }
        }
    }

    private var current: Machine? { lock.withLock { machine } }

    private func require(_ verb: String) throws -> Machine {
        guard let machine = current else { throw ControlError(.conflict, "cannot \(verb): the VM is not running") }
        return machine
    }

    private static func refusal(_ verb: String, _ error: Error) -> ControlError {
        if let e = error as? ControlError { return e }
        if let e = error as? LifecycleError { return ControlError(.conflict, "cannot \(verb): \(e)") }
        return ControlError(.internal, "\(verb) failed: \(error)")
    }

    func ping() -> PingInfo {
        PingInfo(buildVersion: Skiff.version, version: Skiff.version, pid: Int64(getpid()),
                 features: ["pause", "resume", "shutdown", "reboot", "snapshot", "restore", "send-migration", "receive-migration"])
    }

    func info() -> VMInfo {
        let machine = current
        let config = lock.withLock { self.config }  // read under the lock: `attach` writes it from another thread
        let disks = machine?.disks.map {
            VMConfigInfo.Disk(path: $0.path, readonly: $0.readOnly, format: $0.format, serial: $0.serial)
        } ?? (config?.disks ?? []).map {
            VMConfigInfo.Disk(path: $0.path, readonly: $0.readOnly, format: $0.format?.rawValue ?? "auto", serial: $0.serial)
        }
        let nets = machine?.networks.map { VMConfigInfo.Net(tap: $0.tap, mac: $0.mac) }
            ?? (config?.networks ?? []).map { VMConfigInfo.Net(tap: $0.tap, mac: $0.mac?.description ?? "") }
        let vmConfig = VMConfigInfo(kernel: config?.kernelPath ?? "", initrd: config?.initrdPath,
                                    cmdline: config?.commandLine ?? "", cpus: .init(bootVCPUs: config?.cpuCount ?? 0),
                                    memory: .init(size: config?.memorySize ?? 0), disks: disks, net: nets)
        var counters: [String: UInt64] = [:]
        let state: String
        if let machine {
            state = machine.runState.apiName
            let c = machine.counters
            counters["uptime_ms"] = Self.wholeMilliseconds(c.uptime)
            counters["exits"] = c.exits
            if let m = lock.withLock({ migration }) {
                counters["migration_iteration"] = UInt64(m.iteration)
                counters["migration_bytes"] = m.bytesSent
                counters["migration_rate_bytes_per_s"] = UInt64(m.rate)
                counters["migration_dirty_bytes"] = m.dirtyBytes
                counters["migration_expected_downtime_us"] = UInt64(max(0, m.expectedDowntime / .microseconds(1)))
                counters["migration_throttle_percent"] = UInt64(m.throttlePercent)
            }
        } else {
            state = lock.withLock { self.state }
        }
        let snapshot = machine?.snapshotProgress.map { p -> SnapshotProgressInfo in
            let r = p.current
            return SnapshotProgressInfo(phase: r.phase.rawValue, memoryBytes: r.memoryBytes,
                                        memoryBytesScanned: r.memoryBytesScanned, memoryBytesWritten: r.memoryBytesWritten,
                                        diskBytesCopied: r.diskBytesCopied,
                                        elapsedMs: Self.wholeMilliseconds(r.elapsed))
        }
        return VMInfo(state: state, config: vmConfig, counters: counters, snapshot: snapshot)
    }

    /// A non-negative duration in whole milliseconds, as the API's `_ms` fields give it.
    private static func wholeMilliseconds(_ d: Duration) -> UInt64 {
        let (seconds, attoseconds) = d.components
        return seconds < 0 ? 0 : UInt64(seconds) * 1000 + UInt64(attoseconds / 1_000_000_000_000_000)
    }

    func pause() throws {
        do { try require("pause").pause() } catch { throw Self.refusal("pause", error) }
    }

    func resume() throws {
        do { try require("resume").resume() } catch { throw Self.refusal("resume", error) }
    }

    func shutdown() throws {
        do { try require("shut down").requestShutdown() } catch { throw Self.refusal("shut down", error) }
    }

    func reboot() throws {
        do { try require("reboot").requestReboot() } catch { throw Self.refusal("reboot", error) }
    }

    /// `vm.snapshot {"destination_url": "file:///DIR"}` (the API checked the scheme).
    func snapshot(_ request: SnapshotRequest) throws {
        let directory = String(request.destinationURL.dropFirst("file://".count))
        do {
            try require("snapshot").snapshot(to: directory)
        } catch let refused as SnapshotRefused {
            throw ControlError(.conflict, "cannot snapshot: \(refused)")
        } catch {
            throw Self.refusal("snapshot", error)
        }
    }

    /// `vm.restore {"source_url": "file:///DIR"}`, accepted only while
    /// `waitForRestore` waits. The machine is built here (a bad snapshot is this
    /// request's error, and the VMM keeps waiting) and starts paused, as Cloud
    /// Hypervisor's: `vm.resume` runs it.
    func restore(_ request: RestoreRequest) throws {
        guard request.prefault != true else {
            throw ControlError(.badRequest, "prefault is not supported: guest memory is always mapped lazily")
        }
        let directory = String(request.sourceURL.dropFirst("file://".count))
        let resources: RestoreResources = try lock.withLock {
            guard let r = restoreResources, machine == nil, handedOver == nil, !restoring else {
                throw ControlError(.conflict, "cannot restore: this VMM already has a VM (vm.restore needs "
                    + "`skiff run --api-socket PATH` started without --kernel or --restore)")
            }
            restoring = true
            return r
        }
        do {
            let restored = try Machine(restoringFrom: directory, resources: resources)
            lock.withLock {
                restoring = false
                handedOver = .some(restored)
            }
            handOver.signal()
            // Answer once the main thread runs it (paused), so a vm.resume right after this works.
            let deadline = ContinuousClock.now + .seconds(30)
            while current !== restored || restored.runState != .paused, ContinuousClock.now < deadline { usleep(1000) }
        } catch {
            lock.withLock { restoring = false }
            if error is ControlError { throw error }
            throw ControlError(.badRequest, "cannot restore from \(directory): \(error)")
        }
    }

    /// `vm.send-migration`: connects (plain TCP or, later, the secure channel),
    /// migrates, and answers only once the destination runs the VM.
    func sendMigration(_ request: SendMigrationRequest) throws -> MigrationResult {
        let machine = try require("migrate")
        let endpoint: MigrationEndpoint
        let security: MigrationSecurity
        do {
            endpoint = try MigrationEndpoint(parsing: request.destinationURL)
            try Self.requireNumeric(endpoint, field: "destination_url")
            security = try MigrationTransport.wrapCheck(
                try MigrationSecurity.from(keyPath: request.migrationKey, insecure: request.insecureMigration == true))
        } catch {
            throw ControlError(.badRequest, "\(error)")
        }
        var options = MigrationOptions()
        if let ms = request.downtimeLimitMs { options.downtimeLimit = .milliseconds(Int64(ms)) }
        lock.withLock { migration = MigrationProgress() }
        do {
            let stream = try MigrationTransport.connect(to: endpoint, security: security)
            let summary = try machine.sendMigration(over: stream, options: options) { [weak self] p in
                self?.lock.withLock { self?.migration = p }
            }
            func ms(_ d: Duration) -> Double { Double(d / .microseconds(1)) / 1000 }
            return MigrationResult(totalMs: ms(summary.total), downtimeMs: ms(summary.downtime), bytes: summary.bytesSent,
                                   iterations: summary.iterations, converged: summary.converged,
                                   throttlePercent: summary.throttlePercent)
        } catch let e as LifecycleError {
            throw ControlError(.conflict, "cannot migrate: \(e)")
        } catch let e as MigrationError where e.kind == .refused {
            throw ControlError(.conflict, "migration failed, the VM runs on here: \(e)")
        } catch {
            throw ControlError(.internal, "migration failed, the VM runs on here: \(error)")
        }
    }

    /// The API takes IP addresses only: a name look-up inside the running VMM would need
    /// files, NSS modules and DNS, which its seccomp filters forbid (`skiff migrate` and
    /// `skiff run --incoming` look names up themselves, before any filter).
    static func requireNumeric(_ endpoint: MigrationEndpoint, field: String) throws {
        guard endpoint.isNumeric else {
            throw MigrationError(.usage, "\(field) '\(endpoint)' names a host: the API takes an IP address "
                                 + "(`skiff migrate` looks host names up itself)")
        }
    }

    /// `vm.receive-migration`: only for a skiff started without a VM; answers once it runs here.
    func receiveMigration(_ request: ReceiveMigrationRequest) throws {
        guard let incoming, current == nil, lock.withLock({ handedOver == nil && !restoring }) else {
            throw ControlError(.conflict, "cannot receive a VM: this skiff already runs one")
        }
        do {
            _ = try MigrationTransport.wrapCheck(
                try MigrationSecurity.from(keyPath: request.migrationKey, insecure: request.insecureMigration == true))
            try Self.requireNumeric(try MigrationEndpoint(parsing: request.receiverURL), field: "receiver_url")
        } catch {
            throw ControlError(.badRequest, "\(error)")
        }
        let (taps, disks) = lock.withLock { () -> ([String], [String]) in
            state = VMInfo.stateReceiving
            return (restoreResources?.taps ?? [], restoreResources?.diskPaths ?? [])
        }
        do {
            try incoming.receive {
                try IncomingRun.receive(address: request.receiverURL, keyPath: request.migrationKey,
                                        insecure: request.insecureMigration == true, taps: taps, disks: disks)
            }
        } catch {
            lock.withLock { state = VMInfo.stateCreated }
            throw ControlError(.conflict, "cannot receive the VM: \(error)")
        }
    }

    func shutdownVMM() throws {
        let waiting: Bool = lock.withLock {
            guard restoreResources != nil, machine == nil, handedOver == nil else { return false }
            handedOver = .some(nil)
            return true
        }
        if waiting { handOver.signal() }
        // The VMM serves one VM: ending the VMM ends it the same orderly way.
        guard let machine = current else { return }
        do { try machine.requestShutdown() } catch { throw Self.refusal("shut down", error) }
    }
}
