import CKVM
import Devices
import Foundation
import KVM

/// Runs one vCPU on a dedicated OS thread: KVM_RUN, dispatch the exit to the
/// port-I/O or MMIO bus, repeat until the machine stops. Another thread stops
/// it with `kick()` (immediate_exit + a signal that interrupts KVM_RUN).
final class VCPUThread: @unchecked Sendable {
    let vcpu: VCPU
    private let pio: Bus
    private let mmio: Bus
    private let onExit: (MachineExit) -> Void
    private let isStopping: () -> Bool
    private var thread: pthread_t?
    private let started = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// The signal used to kick vCPUs out of KVM_RUN.
    static var kickSignal: Int32 { ckvm_sigrtmin() }

    init(vcpu: VCPU, pio: Bus, mmio: Bus, isStopping: @escaping () -> Bool, onExit: @escaping (MachineExit) -> Void) {
        self.vcpu = vcpu
        self.pio = pio
        self.mmio = mmio
        self.isStopping = isStopping
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

    func start() {
        let t = Thread { [self] in
            // A parent may have started us with signals blocked (masks are
            // inherited); the kick must get through or KVM_RUN never returns.
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, VCPUThread.kickSignal)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
            thread = pthread_self()
            started.signal()
            runLoop()
            finished.signal()
        }
        t.name = "skiff-vcpu\(vcpu.id)"
        t.stackSize = 1 << 20
        t.start()
        started.wait()
    }

    func kick() {
        vcpu.requestImmediateExit()
        if let thread { pthread_kill(thread, VCPUThread.kickSignal) }
    }

    /// Waits for the thread to leave its loop, kicking it until it does.
    func join() {
        while finished.wait(timeout: .now() + .milliseconds(50)) == .timedOut { kick() }
    }

    private func runLoop() {
        while !isStopping() {
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
