import API
import Foundation
import Migration
import VMM

/// The control API's view of `skiff run`: it forwards each request to the
/// machine that runs now (a `vm.reboot` builds a new one), and maps lifecycle
/// refusals to 409s.
final class MachineControl: VMControl, @unchecked Sendable {
    private let config: MachineConfig
    private let lock = NSLock()
    private var machine: Machine?
    private var state = VMInfo.stateCreated
    /// The migration in progress (or last finished), for `vm.info` counters.
    private var migration: MigrationProgress?

    /// Set while `skiff run --api-socket` waits for `vm.receive-migration`.
    private let incoming: IncomingSlot?

    init(config: MachineConfig, incoming: IncomingSlot? = nil) {
        self.config = config
        self.incoming = incoming
    }

    /// The machine the requests go to, from `run()` until it returns.
    func attach(_ machine: Machine?) {
        lock.withLock {
            self.machine = machine
            if machine == nil { state = VMInfo.stateShutdown }
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
                 features: ["pause", "resume", "shutdown", "reboot", "snapshot", "restore", "send-migration"])
    }

    func info() -> VMInfo {
        let machine = current
        let disks = machine?.disks.map {
            VMConfigInfo.Disk(path: $0.path, readonly: $0.readOnly, format: $0.format, serial: $0.serial)
        } ?? config.disks.map {
            VMConfigInfo.Disk(path: $0.path, readonly: $0.readOnly, format: $0.format?.rawValue ?? "auto", serial: $0.serial)
        }
        let nets = machine?.networks.map { VMConfigInfo.Net(tap: $0.tap, mac: $0.mac) }
            ?? config.networks.map { VMConfigInfo.Net(tap: $0.tap, mac: $0.mac?.description ?? "") }
        let vmConfig = VMConfigInfo(kernel: config.kernelPath, initrd: config.initrdPath, cmdline: config.commandLine,
                                    cpus: .init(bootVCPUs: config.cpuCount), memory: .init(size: config.memorySize),
                                    disks: disks, net: nets)
        var counters: [String: UInt64] = [:]
        let state: String
        if let machine {
            state = machine.runState.apiName
            let c = machine.counters
            counters["uptime_ms"] = UInt64(c.uptime.components.seconds) * 1000
                + UInt64(c.uptime.components.attoseconds / 1_000_000_000_000_000)
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
        return VMInfo(state: state, config: vmConfig, counters: counters)
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

    /// `vm.send-migration`: connects (plain TCP or, later, the secure channel),
    /// migrates, and answers only once the destination runs the VM.
    func sendMigration(_ request: SendMigrationRequest) throws -> MigrationResult {
        let machine = try require("migrate")
        let endpoint: MigrationEndpoint
        let security: MigrationSecurity
        do {
            endpoint = try MigrationEndpoint(parsing: request.destinationURL)
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

    /// `vm.receive-migration`: only for a skiff started without a VM; answers once it runs here.
    func receiveMigration(_ request: ReceiveMigrationRequest) throws {
        guard let incoming, current == nil else {
            throw ControlError(.conflict, "cannot receive a VM: this skiff already runs one")
        }
        do {
            _ = try MigrationTransport.wrapCheck(
                try MigrationSecurity.from(keyPath: request.migrationKey, insecure: request.insecureMigration == true))
            _ = try MigrationEndpoint(parsing: request.receiverURL)
        } catch {
            throw ControlError(.badRequest, "\(error)")
        }
        lock.withLock { state = VMInfo.stateReceiving }
        do {
            try incoming.receive {
                try IncomingRun.receive(address: request.receiverURL, keyPath: request.migrationKey,
                                        insecure: request.insecureMigration == true)
            }
        } catch {
            lock.withLock { state = VMInfo.stateCreated }
            throw ControlError(.conflict, "cannot receive the VM: \(error)")
        }
    }

    func shutdownVMM() throws {
        // The VMM serves one VM: ending the VMM ends it the same orderly way.
        guard let machine = current else {
            incoming?.quit()  // waiting for vm.receive-migration: nothing to stop but the wait
            return
        }
        do { try machine.requestShutdown() } catch { throw Self.refusal("shut down", error) }
    }
}
