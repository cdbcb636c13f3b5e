import CKVM
import Foundation
import KVM
import Testing
@testable import VMState

/// Per-vCPU state on a real KVM VM: set distinctive values, save, restore into
/// a fresh VM, save again, compare.
@Suite(.enabled(if: kvmAvailable, "needs read/write access to /dev/kvm"))
struct VCPUStateKVMTests {
    static let tscDeadlineMode: UInt32 = 2 << 17
    static let lstar: UInt32 = 0xC000_0082
    static let kernelGSBase: UInt32 = 0xC000_0102

    /// A vCPU with CPUID (TSC-deadline timer on), an enabled LAPIC whose timer is
    /// in TSC-deadline mode with a deadline far ahead, and values in registers,
    /// debug registers and MSRs that no fresh vCPU has.
    static func prepare(_ kvm: KVM, _ vcpu: VCPU) throws -> UInt64 {
        try vcpu.setCPUID(try kvm.supportedCPUID())
        var regs = try vcpu.registers()
        regs.rax = 0x1122_3344_5566_7788; regs.r15 = 42; regs.rip = 0xFFF0; regs.rflags = 0x202
        try vcpu.setRegisters(regs)
        var sregs = try vcpu.specialRegisters()
        sregs.cr2 = 0xDEAD_B000
        try vcpu.setSpecialRegisters(sregs)

        var apic = try vcpu.localAPIC()
        withUnsafeMutableBytes(of: &apic.regs) { raw in
            raw.storeBytes(of: UInt32(0x1FF), toByteOffset: 0xF0, as: UInt32.self)                  // SVR: enabled, vector 0xFF
            raw.storeBytes(of: UInt32(0x20), toByteOffset: 0x80, as: UInt32.self)                   // TPR
            raw.storeBytes(of: tscDeadlineMode | 0xEC, toByteOffset: 0x320, as: UInt32.self)        // LVT timer
        }
        try vcpu.setLocalAPIC(apic)

        var debug = try vcpu.debugRegisters()
        debug.db = (0x1000, 0x2000, 0x3000, 0x4000); debug.dr7 = 0x401
        try vcpu.setDebugRegisters(debug)

        let tsc: UInt64 = 1 << 40
        let deadline = tsc + (1 << 50)
        try vcpu.setMSRs([(0x174, 0x10), (0x175, 0x1234_5000), (lstar, 0xFFFF_FFFF_8100_0000),
                          (kernelGSBase, 0xFFFF_8880_0000_0000), (MSRIndex.tsc, tsc)])
        try vcpu.setMSRs([(MSRIndex.tscDeadline, deadline)])
        return deadline
    }

    @Test func roundTripsIntoAFreshVMAndSavesTheSameAgain() throws {
        let kvm = try KVM()
        let indices = try kvm.msrIndexList()
        let (sourceVM, sourceCPUs) = try makeVM(kvm)
        let deadline = try Self.prepare(kvm, sourceCPUs[0])
        let saved = try sourceCPUs[0].saveState(msrIndices: indices, xsaveSize: sourceVM.xsaveSize)
        #expect(saved.formatVersion == VCPUState.version)
        #expect(!saved.cpuid.isEmpty)
        #expect(saved.xsave.count == sourceVM.xsaveSize)
        #expect(saved.debugRegisters?.db == [0x1000, 0x2000, 0x3000, 0x4000])
        #expect(saved.msrs.first { $0.index == MSRIndex.tscDeadline }?.value == deadline)

        let decoded = try JSONDecoder().decode(VCPUState.self, from: JSONEncoder().encode(saved))
        #expect(decoded == saved)

        let (targetVM, targetCPUs) = try makeVM(kvm)
        try targetCPUs[0].restoreState(decoded, xsaveSize: targetVM.xsaveSize)
        let again = try targetCPUs[0].saveState(msrIndices: indices, xsaveSize: targetVM.xsaveSize)

        #expect(again.registers == saved.registers)
        #expect(again.specialRegisters == saved.specialRegisters)
        #expect(again.mpState == saved.mpState)
        #expect(again.cpuid == saved.cpuid)
        #expect(again.xsave == saved.xsave)
        #expect(again.xcrs == saved.xcrs)
        #expect(again.debugRegisters == saved.debugRegisters)
        #expect(again.localAPIC == saved.localAPIC)
        #expect(again.events == saved.events)
        #expect(again.tscKHz == saved.tscKHz)
        // The TSC moved on; everything else, the deadline included, must be as saved.
        // A deadline written before the LAPIC was in deadline mode would read back 0.
        let moving: Set<UInt32> = [MSRIndex.tsc]
        let before = Dictionary(saved.msrs.filter { !moving.contains($0.index) }.map { ($0.index, $0.value) }) { a, _ in a }
        let after = Dictionary(again.msrs.filter { !moving.contains($0.index) }.map { ($0.index, $0.value) }) { a, _ in a }
        for (index, value) in before where after[index] != value {
            let restored = after[index].map { String($0, radix: 16) } ?? "nothing"
            Issue.record("MSR \(MSRIndex.describe(index)): saved 0x\(String(value, radix: 16)), restored \(restored)")
        }
        #expect(after[MSRIndex.tscDeadline] == deadline)
        #expect(after[Self.lstar] == 0xFFFF_FFFF_8100_0000)
        let tscAfter = try #require(again.msrs.first { $0.index == MSRIndex.tsc }?.value)
        // Not reset and not jumped: at most a minute of cycles later. (PVM hosts
        // ignore guest TSC writes and run the guest on the host TSC, so the
        // value set in prepare() is not checked.)
        let tscSaved = try #require(saved.msrs.first { $0.index == MSRIndex.tsc }?.value)
        let khz = UInt64(saved.tscKHz ?? 5_000_000)
        #expect(tscAfter >= tscSaved && tscAfter - tscSaved < khz * 1000 * 60, "restored TSC continues from the saved value")
    }

    @Test func zeroTSCDeadlineIsSavedAsTheTSC() throws {
        let kvm = try KVM()
        let (_, cpus) = try makeVM(kvm)
        let state = try cpus[0].saveState(msrIndices: [MSRIndex.tsc, MSRIndex.tscDeadline])
        let tsc = try #require(state.msrs.first { $0.index == MSRIndex.tsc }?.value)
        #expect(state.msrs.first { $0.index == MSRIndex.tscDeadline }?.value == tsc)
    }

    @Test func unreadableMSRsAreSkippedAndReadingGoesOn() throws {
        let kvm = try KVM()
        let (_, cpus) = try makeVM(kvm)
        let (values, skipped) = try cpus[0].readMSRs([0x174, 0xDEAD_BEEF, 0x175, 0xBAD0_0001])
        #expect(skipped == [0xDEAD_BEEF, 0xBAD0_0001])
        #expect(values.map(\.index) == [0x174, 0x175])
        // More than one chunk.
        let list = try kvm.msrIndexList()
        let many = (0..<600).map { list[$0 % list.count] }
        #expect(try cpus[0].readMSRs(many).values.count + (try cpus[0].readMSRs(many).skipped.count) == 600)
    }

    @Test func aRefusedMSRIsNamedInTheError() throws {
        let kvm = try KVM()
        let (vm, cpus) = try makeVM(kvm)
        var state = try cpus[0].saveState(msrIndices: [0x174], xsaveSize: vm.xsaveSize)
        state.msrs.append(.init(index: 0xDEAD_BEEF, value: 1))
        let (target, fresh) = try makeVM(kvm)
        let error = try #require(throws: VCPUStateError.self) { try fresh[0].restoreState(state, xsaveSize: target.xsaveSize) }
        #expect(error.message.contains("0xdeadbeef"))
    }

    @Test func badBlocksChangeNothing() throws {
        let kvm = try KVM()
        let (_, cpus) = try makeVM(kvm)
        var state = try cpus[0].saveState(msrIndices: [])
        let rip = state.registers.rip
        state.registers.rip = 0x1234
        state.xsave = [UInt8](repeating: 0, count: 100)
        #expect(throws: VCPUStateError.self) { try cpus[0].restoreState(state) }
        #expect(try cpus[0].registers().rip == rip, "validation runs before the first KVM call")
    }

    @Test func wholeMachineRoundTripChecksCountsAndIDs() throws {
        let kvm = try KVM()
        let indices = try kvm.msrIndexList()
        let (vm, cpus) = try makeVM(kvm, vcpus: 2)
        for c in cpus { _ = try Self.prepare(kvm, c) }
        let saved = try vm.saveKVMState(vcpus: cpus, msrIndices: indices)
        #expect(saved.vcpus.map(\.id) == [0, 1])

        let (one, oneCPU) = try makeVM(kvm, vcpus: 1)
        let mismatch = try #require(throws: SnapshotError.self) {
            try one.restoreKVMState(vcpus: oneCPU, states: saved.vcpus, platform: saved.platform, clock: .frozen)
        }
        #expect(mismatch.kind == .sizeMismatch)

        let (target, targetCPUs) = try makeVM(kvm, vcpus: 2)
        try target.restoreKVMState(vcpus: targetCPUs, states: saved.vcpus, platform: saved.platform, clock: .frozen)
        let again = try target.saveKVMState(vcpus: targetCPUs, msrIndices: indices)
        #expect(again.vcpus.map(\.registers) == saved.vcpus.map(\.registers))
        #expect(again.vcpus.map(\.localAPIC) == saved.vcpus.map(\.localAPIC))
        #expect(again.platform.ioapic == saved.platform.ioapic)
    }
}
