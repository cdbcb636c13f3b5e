import CKVM
import Foundation
import KVM
import Testing
@testable import VMState

/// A vCPU's state survives save → JSON → restore into a new VM's vCPU.
@Suite(.enabled(if: (try? KVM()) != nil, "needs read/write access to /dev/kvm"))
struct VCPUStateTests {
    @Test func roundTripsThroughCodableIntoAFreshVCPU() throws {
        let kvm = try KVM()
        let msrIndices = try kvm.msrIndexList()
        let source = try kvm.createVM()
        try source.createIRQChip()
        let a = try source.createVCPU(id: 0)
        var regs = try a.registers()
        regs.rax = 0x1122_3344_5566_7788; regs.r15 = 42; regs.rip = 0xFFF0; regs.rflags = 0x202
        try a.setRegisters(regs)
        var sregs = try a.specialRegisters()
        sregs.cr2 = 0xDEAD_B000
        try a.setSpecialRegisters(sregs)

        let saved = try a.saveState(msrIndices: msrIndices)
        let json = try JSONEncoder().encode(saved)
        let decoded = try JSONDecoder().decode(VCPUState.self, from: json)
        #expect(decoded == saved)

        let target = try kvm.createVM()
        try target.createIRQChip()
        let b = try target.createVCPU(id: 0)
        try b.restoreState(decoded)
        let restored = try b.saveState(msrIndices: msrIndices)
        #expect(restored.registers == saved.registers)
        #expect(restored.specialRegisters.cr2 == 0xDEAD_B000)
        #expect(restored.registers.rax == 0x1122_3344_5566_7788)
    }

    @Test func refusesOpaqueBlocksOfTheWrongSize() throws {
        let kvm = try KVM()
        let vm = try kvm.createVM()
        try vm.createIRQChip()
        let vcpu = try vm.createVCPU(id: 0)
        var state = try vcpu.saveState(msrIndices: [])
        state.localAPIC = [UInt8](repeating: 0, count: 12)
        #expect(throws: VCPUStateError.self) { try vcpu.restoreState(state) }
    }
}
