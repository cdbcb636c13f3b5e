import CKVM
import Foundation
import Testing
@testable import VMState

/// The parts of vCPU state handling that need no KVM: MSR ordering, the TSC
/// deadline rewrite, decoding of older and newer versions, validation.
@Suite struct VCPUStateLogicTests {
    @Test func tscDeadlineGoesAloneInTheLastChunkAfterTheTSC() {
        var msrs = (0..<600).map { VCPUState.MSR(index: UInt32(0x1000 + $0), value: 0) }
        msrs.insert(.init(index: MSRIndex.tscDeadline, value: 7), at: 10)
        msrs.insert(.init(index: MSRIndex.tsc, value: 5), at: 400)
        let chunks = MSRIndex.restoreChunks(msrs)
        #expect(chunks.allSatisfy { $0.count <= MSRIndex.chunkSize })
        #expect(chunks.last == [.init(index: MSRIndex.tscDeadline, value: 7)])
        #expect(chunks.dropLast().joined().count == 601)
        #expect(chunks.dropLast().contains { $0.contains { $0.index == MSRIndex.tsc } })
        #expect(MSRIndex.restoreChunks([]).isEmpty)
    }

    @Test func zeroDeadlineBecomesTheTSCOthersStay() {
        var a: [VCPUState.MSR] = [.init(index: MSRIndex.tsc, value: 500), .init(index: MSRIndex.tscDeadline, value: 0)]
        a.fixZeroTSCDeadline()
        #expect(a[1].value == 500)
        var b: [VCPUState.MSR] = [.init(index: MSRIndex.tsc, value: 500), .init(index: MSRIndex.tscDeadline, value: 900)]
        b.fixZeroTSCDeadline()
        #expect(b[1].value == 900)
        var c: [VCPUState.MSR] = [.init(index: MSRIndex.tscDeadline, value: 0)]
        c.fixZeroTSCDeadline()
        #expect(c[0].value == 0, "without a saved TSC there is nothing to rewrite it to")
    }

    @Test func msrNamesInErrors() {
        #expect(MSRIndex.describe(0x6E0) == "0x6e0 (IA32_TSC_DEADLINE)")
        #expect(MSRIndex.describe(0xDEAD_BEEF) == "0xdeadbeef")
    }

    @Test func versionOneStateDecodesWithTheNewPartsEmpty() throws {
        let data = try JSONEncoder().encode(Fixtures.vcpu(0))
        var json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        for key in ["formatVersion", "cpuid", "xsave", "xcrs", "debugRegisters", "tscKHz"] { json.removeValue(forKey: key) }
        let old = try JSONDecoder().decode(VCPUState.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(old.formatVersion == 1)
        #expect(old.cpuid.isEmpty && old.xsave.isEmpty && old.xcrs.isEmpty)
        #expect(old.debugRegisters == nil && old.tscKHz == nil)
        #expect(old.registers == Fixtures.vcpu(0).registers)
        try old.validate()
    }

    @Test func newerStateVersionIsRefused() throws {
        var state = Fixtures.vcpu(0)
        state.formatVersion = VCPUState.version + 1
        let data = try JSONEncoder().encode(state)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(VCPUState.self, from: data) }
    }

    @Test func validationNamesTheBadPart() {
        func message(_ edit: (inout VCPUState) -> Void) -> String? {
            var s = Fixtures.vcpu(3)
            edit(&s)
            do { try s.validate(); return nil } catch { return "\(error)" }
        }
        #expect(message { _ in } == nil)
        #expect(message { $0.fpu = [] }?.contains("FPU") == true)
        #expect(message { $0.localAPIC.append(0) }?.contains("local APIC") == true)
        #expect(message { $0.xsave = [1] }?.contains("XSAVE") == true)
        #expect(message { $0.specialRegisters.interruptBitmap = [1] }?.contains("interrupt bitmap") == true)
        #expect(message { $0.debugRegisters?.db = [1] }?.contains("debug") == true)
        #expect(message { $0.xcrs = Array(repeating: .init(index: 0, value: 1), count: 17) }?.contains("XCRs") == true)
        let flags = MemoryLayout<kvm_vcpu_events>.offset(of: \kvm_vcpu_events.flags)!
        #expect(message { $0.events[flags + 3] = 0x80 }?.contains("unknown flags") == true)
        #expect(message { $0.id = -1 }?.contains("id") == true)
    }
}
