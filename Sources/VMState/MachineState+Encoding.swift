import CKVM

/// The state file's encoding (`state.bin`: framed binary state with a CRC-64) for
/// other carriers of the same state, such as a migration stream.
extension MachineState {
    /// The bytes `state.bin` would hold.
    public func encodedStateFile() throws -> [UInt8] {
        try StateFile.encode(self)
    }

    /// Decodes and validates bytes in `state.bin`'s framing; `name` is for errors.
    public static func decodeStateFile(_ bytes: [UInt8], name: String) throws -> MachineState {
        try StateFile.decode(bytes, name: name)
    }

    /// Checks the state against the machine config (vCPU count, virtio devices).
    public func checkConsistency(with machine: SnapshotMachineConfig) throws {
        try SnapshotReader.checkConsistency(state: self, machine: machine)
    }
}

extension VCPUState.CPUIDEntry {
    /// The entry as KVM_GET_CPUID2 gives it.
    public init(_ e: kvm_cpuid_entry2) {
        self.init(function: e.function, index: e.index, flags: e.flags, eax: e.eax, ebx: e.ebx, ecx: e.ecx, edx: e.edx)
    }
}
