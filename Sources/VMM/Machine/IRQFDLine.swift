import CKVM
import Devices
import KVM
#if canImport(Glibc)
import Glibc
#endif

/// An interrupt line backed by an irqfd: a write to the eventfd makes KVM raise
/// the GSI on the in-kernel IOAPIC, from any thread, without a vCPU exit.
final class IRQFDLine: InterruptLine, @unchecked Sendable {
    let gsi: UInt32
    let eventFD: Int32

    init(vm: VirtualMachine, gsi: UInt32) throws {
        let fd = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard fd >= 0 else { throw KVMError("eventfd for GSI \(gsi)", errno: errno) }
        do {
            try vm.registerIRQFD(fd, gsi: gsi)
        } catch {
            close(fd)
            throw error
        }
        self.gsi = gsi
        self.eventFD = fd
    }

    deinit { close(eventFD) }

    func trigger() {
        var one: UInt64 = 1
        _ = write(eventFD, &one, 8)
    }
}
