/// The whole machine state a snapshot's `state.bin` holds: every vCPU, the
/// VM-wide KVM state and the devices. Guest memory is a separate file, and the
/// machine config is in the manifest.
public struct MachineState: Codable, Equatable, Sendable {
    public var vcpus: [VCPUState]
    public var platform: KVMPlatformState
    public var devices: DeviceStates

    public init(vcpus: [VCPUState], platform: KVMPlatformState, devices: DeviceStates) {
        self.vcpus = vcpus
        self.platform = platform
        self.devices = devices
    }

    /// Checks everything that can be checked without KVM. Counts beyond the
    /// limits are reported as such before any part is looked at.
    public func validate() throws {
        guard (1...StateLimits.vcpus).contains(vcpus.count) else {
            throw SnapshotError(.limitExceeded, "\(vcpus.count) vCPUs in the state (1...\(StateLimits.vcpus))")
        }
        for (i, v) in vcpus.enumerated() {
            guard v.msrs.count <= StateLimits.msrs, v.cpuid.count <= StateLimits.cpuidEntries,
                  v.xsave.count <= StateLimits.xsaveBytes, v.xcrs.count <= StateLimits.xcrs else {
                throw SnapshotError(.limitExceeded, "vCPU \(i) holds \(v.msrs.count) MSRs, \(v.cpuid.count) CPUID entries, "
                    + "\(v.xsave.count) XSAVE bytes, \(v.xcrs.count) XCRs (limits \(StateLimits.msrs), "
                    + "\(StateLimits.cpuidEntries), \(StateLimits.xsaveBytes), \(StateLimits.xcrs))")
            }
            guard v.id == i else { throw SnapshotError(.invalidState, "vCPU at position \(i) has id \(v.id)") }
        }
        guard devices.virtio.count <= DeviceStates.maxVirtioDevices else {
            throw SnapshotError(.limitExceeded, "\(devices.virtio.count) virtio devices (at most \(DeviceStates.maxVirtioDevices))")
        }
        do {
            for v in vcpus { try v.validate() }
            try platform.validate()
            try devices.validate()
        } catch let e as SnapshotError {
            throw e
        } catch {
            throw SnapshotError(.invalidState, "\(error)")
        }
    }
}
