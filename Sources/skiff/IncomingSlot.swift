import Dispatch
import Migration
import Posix
import VMM

/// Where `vm.receive-migration` (on the API's control queue) hands a received
/// VM to `skiff run`'s main thread, which runs it; the request answers once it
/// runs. `ready` becomes readable when a VM is there.
// Sound because: `received` and `busy` are touched only with `lock` held; the received VM is handed over once, to the main thread.
final class IncomingSlot: @unchecked Sendable {
    let ready: EventFD
    private let lock = ThreadLock()
    private var received: IncomingRun.Received?
    private var busy = false
    private let started = DispatchSemaphore(value: 0)

    init() throws { ready = try EventFD("incoming VM") }

    /// Runs `receive` unless a VM is already here or arriving; hands the VM to
    /// the main thread and waits until its vCPUs run.
    func receive(_ receive: () throws -> IncomingRun.Received) throws {
        let free = lock.withLock { () -> Bool in
            guard !busy else { return false }
            busy = true
            return true
        }
        guard free else { throw MigrationError(.usage, "this skiff already has a VM (or one is arriving)") }
        let vm: IncomingRun.Received
        do {
            vm = try receive()
        } catch {
            lock.withLock { busy = false }  // nothing half-started: another request may try again
            throw error
        }
        lock.withLock { received = vm }
        ready.signal()
        started.wait()
    }

    /// The main thread's side: the VM, once `ready` fired (nil: `quit()`).
    func take() -> IncomingRun.Received? { lock.withLock { received } }

    /// `vmm.shutdown` while waiting: the main thread wakes up with no VM.
    func quit() { ready.signal() }

    /// Called once the VM's vCPUs run (after `running` went to the source).
    func didStart() { started.signal() }
}
