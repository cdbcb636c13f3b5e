import CKVM
import Devices
import Events
import KVM
import Posix
import Seccomp
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs one vCPU on a dedicated, joinable OS thread: KVM_RUN, dispatch the exit
/// to the port-I/O or MMIO bus, repeat. Before every KVM_RUN the thread asks the
/// machine's `VCPUGate` what to do (run, park while paused, or stop); `kick()`
/// gets it out of KVM_RUN (immediate_exit + a signal) to read a new request.
final class VCPUThread: Sendable {
    let vcpu: VCPU
    private let pio: Bus
    private let mmio: Bus
    private let gate: VCPUGate
    private let onExit: @Sendable (MachineExit) -> Void
    /// Set by `start`, taken by `join`; `kick` signals it with the lock held, so never after the join.
    private let thread = Lock<JoinableThread?>(nil)
    /// KVM_RUN exits handled so far (for `vm.info`).
    let exits = Atomic<UInt64>(0)

    /// The signal used to kick vCPUs out of KVM_RUN.
    static var kickSignal: Int32 { ckvm_sigrtmin() }

    init(vcpu: VCPU, pio: Bus, mmio: Bus, gate: VCPUGate, onExit: @escaping @Sendable (MachineExit) -> Void) {
        self.vcpu = vcpu
        self.pio = pio
        self.mmio = mmio
        self.gate = gate
        self.onExit = onExit
    }

    /// Installs the no-op kick handler once per process. No SA_RESTART, so the
    /// signal makes KVM_RUN return EINTR.
    static func installKickHandler() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0
        sigemptyset(&action.sa_mask)
        sigaction(kickSignal, &action, nil)
    }

    /// Starts the thread; it loads the vCPU seccomp filter (unless `seccomp` is
    /// off) before its first KVM_RUN, and ends the VM if that fails.
    func start(seccomp: SeccompMode = .off) throws {
        let started = try JoinableThread(name: "skiff-vcpu\(vcpu.id)", stackSize: 1 << 20) { [self] in
            // A parent may have started us with signals blocked (masks are
            // inherited); the kick must get through or KVM_RUN never returns.
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, VCPUThread.kickSignal)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
            do {
                try SeccompFilter.install(.vcpu, mode: seccomp)
            } catch {
                onExit(.failed("vCPU \(vcpu.id): \(error)"))
                return
            }
            runLoop()
        }
        thread.withLock { $0 = started }
    }

    /// Gets the thread out of KVM_RUN so it reads the gate again. Safe until
    /// `join()`: a joinable thread's ID stays valid after it returns.
    func kick() {
        vcpu.requestImmediateExit()
        thread.withLock { if let t = $0 { pthread_kill(t.pthread, VCPUThread.kickSignal) } }
    }

    /// Waits for the thread to return; the gate must say `stop` (or the vCPU have
    /// ended by itself). Kicks once more in case it is in KVM_RUN.
    func join() {
        guard thread.withLock({ $0 != nil }) else { return }
        kick()
        guard let t = thread.withLock({ $0.take() }) else { return }
        t.join()
    }

    private func runLoop() {
        while gate.shouldRun() {
            defer { exits.add(1, ordering: .relaxed) }
            let exit: VCPUExit
            do {
                exit = try vcpu.run()
            } catch {
                onExit(.crashed("\(error); \(vcpu.registerSummary())"))
                return
            }
            switch exit {
            case .io(let port, let isWrite, let size, let count, let data):
                for i in 0..<count {
                    let item = UnsafeMutableRawBufferPointer(rebasing: data[(i * size)..<((i + 1) * size)])
                    if isWrite {
                        pio.write(UInt64(port), data: UnsafeRawBufferPointer(item))
                    } else if !pio.read(UInt64(port), into: item) {
                        item.initializeMemory(as: UInt8.self, repeating: 0xFF)  // nothing there: floating bus
                    }
                }
            case .mmio(let address, let isWrite, let data):
                if isWrite {
                    mmio.write(address, data: UnsafeRawBufferPointer(data))
                } else if !mmio.read(address, into: data) {
                    data.initializeMemory(as: UInt8.self, repeating: 0xFF)
                }
            case .halt:
                // With the in-kernel irqchip KVM handles HLT; an exit here means a
                // halted vCPU with nothing left to do. Don't spin on it.
                usleep(1000)
            case .interrupted:
                continue
            case .shutdown:
                onExit(.crashed("triple fault (KVM_EXIT_SHUTDOWN); \(vcpu.registerSummary())"))
                return
            case .systemEvent(let type):
                switch Int32(type) {
                case KVM_SYSTEM_EVENT_SHUTDOWN: onExit(.poweredOff)
                case KVM_SYSTEM_EVENT_RESET: onExit(.rebooted)
                default: onExit(.crashed("system event \(type); \(vcpu.registerSummary())"))
                }
                return
            case .internalError(let suberror, let data):
                let what = suberror == 1 ? "instruction emulation failed" : "suberror \(suberror)"
                let extra = data.map { "0x" + String($0, radix: 16) }.joined(separator: " ")
                onExit(.crashed("KVM internal error: \(what) [\(extra)]; \(vcpu.registerSummary())"))
                return
            case .failEntry(let reason):
                onExit(.crashed("KVM entry failure 0x\(String(reason, radix: 16)); \(vcpu.registerSummary())"))
                return
            case .other(let reason):
                onExit(.crashed("unhandled KVM exit reason \(reason); \(vcpu.registerSummary())"))
                return
            }
        }
    }
}
