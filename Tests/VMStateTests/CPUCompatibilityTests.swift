import KVM
import Testing
@testable import VMState

/// A restore on a host whose KVM lacks a CPU feature the guest was given is
/// refused before anything runs, naming the features; this host's own guests
/// are never refused.
@Suite struct CPUCompatibilityTests {
    typealias Entry = VCPUState.CPUIDEntry

    static func entry(_ function: UInt32, _ index: UInt32 = 0, eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) -> Entry {
        .init(function: function, index: index, flags: 0, eax: eax, ebx: ebx, ecx: ecx, edx: edx)
    }

    @Test func missingFeatureIsNamed() {
        let saved = [Self.entry(7, ebx: 1 << 16 | 1 << 5), Self.entry(1, ecx: 1 << 28)]
        let supported = [Self.entry(7, ebx: 1 << 5), Self.entry(1, ecx: 1 << 28)]
        #expect(CPUCompatibility.missingFeatures(saved: saved, supported: supported) == ["avx512f (CPUID 7.0 ebx bit 16)"])
    }

    @Test func leafTheHostLacksMissesEveryBit() {
        let saved = [Self.entry(0x8000_0001, edx: 1 << 27 | 1 << 3)]
        #expect(CPUCompatibility.missingFeatures(saved: saved, supported: []) ==
                ["CPUID 80000001.0 edx bit 3", "rdtscp (CPUID 80000001.0 edx bit 27)"])
    }

    @Test func bitsTheVMMOrGuestSetAreNotHostFeatures() {
        // hypervisor, OSXSAVE, TSC deadline, x2APIC (leaf 1 ECX), HTT (leaf 1 EDX), OSPKE (leaf 7 ECX).
        let saved = [Self.entry(1, ecx: 1 << 31 | 1 << 27 | 1 << 24 | 1 << 21, edx: 1 << 28), Self.entry(7, ecx: 1 << 4)]
        #expect(CPUCompatibility.missingFeatures(saved: saved, supported: [Self.entry(1), Self.entry(7)]).isEmpty)
    }

    @Test func xsaveComponentsBeyondTheHostAreRefused() throws {
        var state = Fixtures.state(vcpus: 2)
        state.vcpus[1].xcrs = [.init(index: 0, value: 0xE7)]  // x87, SSE, AVX, AVX-512 state
        let supported = [Self.entry(0xD, eax: 0x7)]           // x87, SSE, AVX
        #expect(CPUCompatibility.missingXSaveComponents(savedXCR0: 0xE7, supported: supported) == 0xE0)
        #expect(throws: SnapshotError.self) { try CPUCompatibility.check(state, supported: supported + state.vcpus[0].cpuid) }
        do {
            try CPUCompatibility.check(state, supported: supported + state.vcpus[0].cpuid)
        } catch let error as SnapshotError {
            #expect(error.kind == .incompatibleHost)
            #expect(error.message.contains("vCPU 1") && error.message.contains("0xe0"))
        }
    }

    @Test(.enabled(if: kvmAvailable, "needs /dev/kvm"))
    func thisHostsOwnVCPUIsCompatible() throws {
        let kvm = try KVM()
        let (vm, vcpus) = try makeVM(kvm)
        // A vCPU set up from the supported table (as Skiff does), saved, then
        // compared with a second fresh vCPU of this host: never refused.
        try vcpus[0].setCPUID(try kvm.supportedCPUID())
        let state = try vcpus[0].saveState(msrIndices: [MSRIndex.tsc], xsaveSize: vm.xsaveSize)
        let (_, others) = try makeVM(kvm)
        try others[0].setCPUID(try kvm.supportedCPUID())
        let fresh = CPUCompatibility.entries(try others[0].cpuid())
        #expect(CPUCompatibility.missingFeatures(saved: state.cpuid, supported: fresh).isEmpty)
        try CPUCompatibility.check(MachineState(vcpus: [state], platform: Fixtures.state().platform, devices: Fixtures.state().devices),
                                   supported: fresh)
    }
}
