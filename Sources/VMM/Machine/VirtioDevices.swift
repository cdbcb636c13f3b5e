import Devices
import Events
import GuestMemory
import KVM
import Virtio
import X86

/// Places virtio-mmio devices in the guest: one 4 KiB window and one GSI each,
/// queue notifications through ioeventfds (handled on the event loop, not the
/// vCPU thread), interrupts through irqfds. Describes them both on the kernel
/// command line (lean kernels without ACPI) and in the ACPI DSDT (stock kernels).
struct VirtioDevices {
    private(set) var transports: [VirtioMMIOTransport] = []
    private(set) var resources: [VirtioMMIODeviceResource] = []
    private var interruptLines: [IRQFDLine] = []

    /// `virtio_mmio.device=…` words for the kernel command line.
    var commandLineArguments: [String] {
        resources.map { VirtioMMIOTransport.kernelCommandLineArgument(base: $0.base, irq: $0.irq) }
    }

    mutating func add(_ device: VirtioDevice, machine vm: VirtualMachine, memory: GuestMemory, mmio: Bus, events: EventLoop) throws {
        let index = transports.count
        let base = Layout.virtioMMIOBase + UInt64(index) * Layout.virtioMMIOSize
        let irq = Layout.firstVirtioIRQ + UInt32(index)
        let line = try IRQFDLine(vm: vm, gsi: irq)
        let transport = try VirtioMMIOTransport(device: device, memory: memory, interrupt: line, eventLoop: events)
        try mmio.insert(transport, at: base, length: VirtioMMIOTransport.windowSize)
        for (queue, fd) in transport.queueNotifiers {
            try vm.registerIOEventFD(fd, at: .mmio(base + VirtioMMIOTransport.notifyOffset), length: 4,
                                     dataMatch: UInt64(queue))
        }
        interruptLines.append(line)
        transports.append(transport)
        resources.append(VirtioMMIODeviceResource(base: base, size: Layout.virtioMMIOSize, irq: irq))
    }
}
