import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// A KVM virtual machine: memory slots, the in-kernel interrupt controllers and
/// timers, eventfd plumbing, and its vCPUs.
public final class VirtualMachine: Sendable {
    public let fileDescriptor: Int32
    public let kvm: KVM

    init(fileDescriptor: Int32, kvm: KVM) {
        self.fileDescriptor = fileDescriptor
        self.kvm = kvm
    }

    deinit { close(fileDescriptor) }

    /// Maps `size` bytes at `hostAddress` into the guest at `guestAddress`.
    public func setUserMemoryRegion(slot: UInt32, guestAddress: UInt64, size: UInt64,
                                    hostAddress: UnsafeMutableRawPointer, logDirtyPages: Bool = false) throws {
        var region = kvm_userspace_memory_region()
        region.slot = slot
        region.flags = logDirtyPages ? UInt32(KVM_MEM_LOG_DIRTY_PAGES) : 0
        region.guest_phys_addr = guestAddress
        region.memory_size = size
        region.userspace_addr = UInt64(UInt(bitPattern: hostAddress))
        try retryingOnInterrupt("KVM_SET_USER_MEMORY_REGION slot \(slot)") {
            ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_USER_MEMORY_REGION, &region)
        }
    }

    /// Intel VT-x needs three pages for the real-mode TSS; harmless elsewhere.
    public func setTSSAddress(_ address: UInt64) throws {
        try retryingOnInterrupt("KVM_SET_TSS_ADDR") { ckvm_ioctl_value(fileDescriptor, CKVM_SET_TSS_ADDR, UInt(address)) }
    }

    public func setIdentityMapAddress(_ address: UInt64) throws {
        var value = address
        try retryingOnInterrupt("KVM_SET_IDENTITY_MAP_ADDR") {
            ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_IDENTITY_MAP_ADDR, &value)
        }
    }

    /// The in-kernel PIC pair, IOAPIC and per-vCPU local APICs.
    public func createIRQChip() throws {
        try retryingOnInterrupt("KVM_CREATE_IRQCHIP") { ckvm_ioctl(fileDescriptor, CKVM_CREATE_IRQCHIP) }
    }

    /// The in-kernel i8254 PIT (Linux calibrates against it).
    public func createPIT() throws {
        var config = kvm_pit_config()
        config.flags = UInt32(KVM_PIT_SPEAKER_DUMMY)
        try retryingOnInterrupt("KVM_CREATE_PIT2") { ckvm_ioctl_pointer(fileDescriptor, CKVM_CREATE_PIT2, &config) }
    }

    /// Drives a GSI line of the in-kernel irqchip.
    public func setIRQLine(_ gsi: UInt32, level: Bool) throws {
        var line = kvm_irq_level()
        line.irq = gsi
        line.level = level ? 1 : 0
        try retryingOnInterrupt("KVM_IRQ_LINE \(gsi)") { ckvm_ioctl_pointer(fileDescriptor, CKVM_IRQ_LINE, &line) }
    }

    /// Writing to `eventFD` raises `gsi` without a trip through user space.
    public func registerIRQFD(_ eventFD: Int32, gsi: UInt32) throws {
        var request = kvm_irqfd()
        request.fd = UInt32(eventFD)
        request.gsi = gsi
        try retryingOnInterrupt("KVM_IRQFD gsi \(gsi)") { ckvm_ioctl_pointer(fileDescriptor, CKVM_IRQFD, &request) }
    }

    public enum IOEventAddress {
        case mmio(UInt64)
        case pio(UInt16)
    }

    /// A guest write of `length` bytes (matching `dataMatch` when given) at `address`
    /// signals `eventFD` in the kernel instead of exiting to the vCPU thread.
    public func registerIOEventFD(_ eventFD: Int32, at address: IOEventAddress, length: UInt32, dataMatch: UInt64?) throws {
        var request = kvm_ioeventfd()
        request.fd = eventFD
        request.len = length
        switch address {
        case .mmio(let a): request.addr = a
        case .pio(let p):
            request.addr = UInt64(p)
            request.flags |= CKVM_IOEVENTFD_FLAG_PIO
        }
        if let dataMatch {
            request.datamatch = dataMatch
            request.flags |= CKVM_IOEVENTFD_FLAG_DATAMATCH
        }
        try retryingOnInterrupt("KVM_IOEVENTFD") { ckvm_ioctl_pointer(fileDescriptor, CKVM_IOEVENTFD, &request) }
    }

    public func createVCPU(id: Int) throws -> VCPU {
        let fd = try retryingOnInterrupt("KVM_CREATE_VCPU \(id)") {
            ckvm_ioctl_value(fileDescriptor, CKVM_CREATE_VCPU, UInt(id))
        }
        do {
            return try VCPU(fileDescriptor: fd, id: id, mmapSize: try kvm.vcpuMmapSize())
        } catch {
            close(fd)
            throw error
        }
    }

    // MARK: - State

    public func clock() throws -> kvm_clock_data {
        var data = kvm_clock_data()
        try retryingOnInterrupt("KVM_GET_CLOCK") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_CLOCK, &data) }
        return data
    }

    public func setClock(_ data: kvm_clock_data) throws {
        var data = data
        data.flags = 0
        try retryingOnInterrupt("KVM_SET_CLOCK") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_CLOCK, &data) }
    }
}
