/// What the API server may ask of the VM. The VMM implements it; the server never
/// imports VMM, so the control plane can be built and tested with a fake.
///
/// Threading contract (the server relies on it):
/// - `ping()` and `info()` are called on the server's event-loop thread and must
///   answer at once — they must not wait for a transition in progress, or every
///   API client stalls behind it.
/// - The state-changing calls run one at a time on the server's control queue, never
///   on the event loop, so they may block for as long as the transition takes.
public protocol VMControl: AnyObject, Sendable {
    /// `GET /api/v1/vmm.ping`.
    func ping() -> PingInfo
    /// `GET /api/v1/vm.info` (and `vm.counters`, which answers its `counters`).
    func info() -> VMInfo
    /// `PUT vm.pause`; throws `ControlError` (`.conflict` when not running).
    func pause() throws
    /// `PUT vm.resume`; throws `ControlError` (`.conflict` when not paused).
    func resume() throws
    /// `PUT vm.shutdown`: the VM ends; skiff exits 0 once the answer is sent
    /// (`APIServer.stop()` waits briefly for answers in flight).
    func shutdown() throws
    /// `PUT vm.reboot`.
    func reboot() throws
    /// `PUT vmm.shutdown`: the VMM process ends.
    func shutdownVMM() throws

    // Requests that are routed and validated already but not implemented by the VMM
    // yet: the defaults below answer 501, so the VMM only has to implement them.

    /// `PUT vm.snapshot` with `{"destination_url": "file:///DIR"}`.
    func snapshot(_ request: SnapshotRequest) throws
    /// `PUT vm.restore` with `{"source_url": "file:///DIR"}`.
    func restore(_ request: RestoreRequest) throws
    /// `PUT vm.send-migration` with `{"destination_url": "tcp:HOST:PORT", …}`: returns
    /// once the destination runs the VM (200 with the summary), or throws with the VM still here.
    func sendMigration(_ request: SendMigrationRequest) throws -> MigrationResult
    /// `PUT vm.receive-migration` with `{"receiver_url": "tcp:HOST:PORT", …}`: returns
    /// once the incoming VM runs here.
    func receiveMigration(_ request: ReceiveMigrationRequest) throws
}

extension VMControl {
    public func snapshot(_ request: SnapshotRequest) throws { throw ControlError.notImplementedYet }
    public func restore(_ request: RestoreRequest) throws { throw ControlError.notImplementedYet }
    public func sendMigration(_ request: SendMigrationRequest) throws -> MigrationResult { throw ControlError.notImplementedYet }
    public func receiveMigration(_ request: ReceiveMigrationRequest) throws { throw ControlError.notImplementedYet }
}
