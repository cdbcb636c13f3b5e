import Devices
import KVM
import Posix

/// An interrupt line backed by an irqfd: a write to the eventfd makes KVM raise
/// the GSI on the in-kernel IOAPIC, from any thread, without a vCPU exit.
final class IRQFDLine: InterruptLine {
    let gsi: UInt32
    let event: EventFD

    init(vm: VirtualMachine, gsi: UInt32) throws {
        event = try EventFD("irqfd for GSI \(gsi)")
        try vm.registerIRQFD(event.fileDescriptor, gsi: gsi)
        self.gsi = gsi
    }

    func trigger() { event.signal() }
}
