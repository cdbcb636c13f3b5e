import CKVM
import KVM
#if canImport(Glibc)
import Glibc
#endif

extension VirtualMachine {
    /// Reads the in-kernel PICs, IOAPIC, PIT and kvmclock. The VM must have an
    /// irqchip and a PIT (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2) and be paused.
    public func savePlatformState() throws -> KVMPlatformState {
        func chip(_ id: Int32) throws -> [UInt8] {
            let c = try irqChip(UInt32(id))
            // SAFETY: copies the union's bytes out of a plain C struct.
            return withUnsafeBytes(of: c.chip) { Array($0) }
        }
        let master = try chip(KVM_IRQCHIP_PIC_MASTER)
        let slave = try chip(KVM_IRQCHIP_PIC_SLAVE)
        let ioapic = try chip(KVM_IRQCHIP_IOAPIC)
        let pitState = try pit()
        let c = try clock()
        let realtime = c.flags & UInt32(KVM_CLOCK_REALTIME) != 0 ? c.realtime : Self.wallClockNanoseconds()
        return KVMPlatformState(picMaster: master, picSlave: slave, ioapic: ioapic,
                                pit: VCPUState.bytes(of: pitState),
                                clock: .init(clock: c.clock, flags: c.flags, realtime: realtime, hostTSC: c.host_tsc))
    }

    /// Applies saved platform state, after every vCPU's state: PIT, then the
    /// clock, then the PICs and IOAPIC last (an interrupt controller restored
    /// earlier could have a line raised by the PIT or a vCPU step overwrite it).
    /// - Returns: the clock behaviour applied: `.advancedByElapsedRealTime` falls
    ///   back to `.frozen` when this host's KVM cannot take KVM_CLOCK_REALTIME
    ///   or the saved state has no wall time.
    @discardableResult
    public func restorePlatformState(_ state: KVMPlatformState, clock clockRestore: ClockRestore) throws -> ClockRestore {
        try state.validate()
        try setPIT(VCPUState.value(kvm_pit_state2(), from: state.pit))

        var data = kvm_clock_data()
        data.clock = state.clock.clock
        data.realtime = state.clock.realtime
        data.host_tsc = state.clock.hostTSC
        let realtimeSupported = UInt32(kvm.check(KVM_CAP_ADJUST_CLOCK)) & UInt32(KVM_CLOCK_REALTIME) != 0
        let applied: ClockRestore = clockRestore == .advancedByElapsedRealTime && state.clock.realtime != 0 && realtimeSupported
            ? .advancedByElapsedRealTime : .frozen
        try setClock(data, flags: applied == .advancedByElapsedRealTime ? UInt32(KVM_CLOCK_REALTIME) : 0)

        for (id, bytes) in [(KVM_IRQCHIP_PIC_MASTER, state.picMaster), (KVM_IRQCHIP_PIC_SLAVE, state.picSlave),
                            (KVM_IRQCHIP_IOAPIC, state.ioapic)] {
            var c = kvm_irqchip()
            c.chip_id = UInt32(id)
            // SAFETY: validate() checked each payload is exactly the union's size.
            withUnsafeMutableBytes(of: &c.chip) { $0.copyBytes(from: bytes) }
            try setIRQChip(c)
        }
        return applied
    }

    static func wallClockNanoseconds() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }
}
