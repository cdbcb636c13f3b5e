import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// VM-wide state a snapshot needs: the in-kernel PICs and IOAPIC, the PIT, the
/// kvmclock with its flags, and capabilities asked of the VM fd.
extension VirtualMachine {
    /// KVM_CHECK_EXTENSION on the VM fd (0 = unsupported). Some answers, such as
    /// KVM_CAP_XSAVE2, are per VM.
    public func check(_ capability: Int32) -> Int32 {
        max(0, ckvm_ioctl_value(fileDescriptor, CKVM_CHECK_EXTENSION, UInt(capability)))
    }

    /// Bytes of a vCPU's XSAVE area on this VM: KVM_CAP_XSAVE2's answer, never
    /// less than `struct kvm_xsave` (4096).
    public var xsaveSize: Int {
        max(Int(check(KVM_CAP_XSAVE2)), VCPU.legacyXSAVESize)
    }

    /// One in-kernel interrupt controller: `KVM_IRQCHIP_PIC_MASTER` (0),
    /// `KVM_IRQCHIP_PIC_SLAVE` (1) or `KVM_IRQCHIP_IOAPIC` (2).
    public func irqChip(_ chipID: UInt32) throws -> kvm_irqchip {
        var chip = kvm_irqchip()
        chip.chip_id = chipID
        try retryingOnInterrupt("KVM_GET_IRQCHIP \(chipID)") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_IRQCHIP, &chip) }
        return chip
    }

    public func setIRQChip(_ chip: kvm_irqchip) throws {
        var chip = chip
        try retryingOnInterrupt("KVM_SET_IRQCHIP \(chip.chip_id)") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_IRQCHIP, &chip) }
    }

    /// The in-kernel i8254 PIT (KVM_CREATE_PIT2 must have run).
    public func pit() throws -> kvm_pit_state2 {
        var state = kvm_pit_state2()
        try retryingOnInterrupt("KVM_GET_PIT2") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_PIT2, &state) }
        return state
    }

    public func setPIT(_ state: kvm_pit_state2) throws {
        var state = state
        try retryingOnInterrupt("KVM_SET_PIT2") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_PIT2, &state) }
    }

    /// KVM_SET_CLOCK with explicit flags. With `KVM_CLOCK_REALTIME` (and
    /// `data.realtime` from the saving host's KVM_GET_CLOCK), KVM adds the wall
    /// time elapsed since then to `data.clock`.
    public func setClock(_ data: kvm_clock_data, flags: UInt32) throws {
        var data = data
        data.flags = flags
        try retryingOnInterrupt("KVM_SET_CLOCK") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_CLOCK, &data) }
    }
}
