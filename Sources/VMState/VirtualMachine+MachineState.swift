import KVM

/// The two calls a snapshot or migration makes for everything KVM holds.
extension VirtualMachine {
    /// Saves every vCPU (each in the documented order) and then the VM-wide state.
    /// All vCPUs must be paused, and stay paused until this returns. Calling it
    /// from the vCPU threads themselves is cheaper for KVM but not required.
    /// - Parameter msrIndices: normally `kvm.msrIndexList()`.
    public func saveKVMState(vcpus: [VCPU], msrIndices: [UInt32]) throws -> (vcpus: [VCPUState], platform: KVMPlatformState) {
        let size = xsaveSize
        let states = try vcpus.map { try $0.saveState(msrIndices: msrIndices, xsaveSize: size) }
        return (states, try savePlatformState())
    }

    /// Restores a VM built like the saved one (irqchip and PIT created, memory
    /// mapped, `vcpus.count` fresh vCPUs, none run yet): every vCPU first, then
    /// PIT → clock → irqchip. Devices come after this, then the vCPUs may run.
    /// Everything is validated before the first KVM call.
    /// - Returns: the clock behaviour applied (see `restorePlatformState`).
    @discardableResult
    public func restoreKVMState(vcpus: [VCPU], states: [VCPUState], platform: KVMPlatformState,
                                clock: ClockRestore) throws -> ClockRestore {
        guard vcpus.count == states.count else {
            throw SnapshotError(.sizeMismatch, "the snapshot has \(states.count) vCPUs, the machine \(vcpus.count)")
        }
        for (vcpu, state) in zip(vcpus, states) {
            guard vcpu.id == state.id else {
                throw SnapshotError(.invalidState, "vCPU \(vcpu.id) would get the state of vCPU \(state.id)")
            }
            try state.validate()
        }
        try platform.validate()
        let size = xsaveSize
        for (vcpu, state) in zip(vcpus, states) { try vcpu.restoreState(state, xsaveSize: size) }
        return try restorePlatformState(platform, clock: clock)
    }
}
