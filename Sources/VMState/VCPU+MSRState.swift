import CKVM
import KVM

/// MSR save and restore: chunked, partial reads detected, the TSC deadline last.
public enum MSRIndex {
    public static let tsc: UInt32 = 0x10
    public static let apicBase: UInt32 = 0x1B
    public static let tscDeadline: UInt32 = 0x6E0
    public static let efer: UInt32 = 0xC000_0080
    public static let kvmSystemTimeNew: UInt32 = 0x4B56_4D01
    /// KVM_GET_MSRS / KVM_SET_MSRS refuse 256 entries or more (MAX_IO_MSRS).
    public static let chunkSize = 255

    static let names: [UInt32: String] = [
        tsc: "IA32_TSC", apicBase: "IA32_APIC_BASE", tscDeadline: "IA32_TSC_DEADLINE", efer: "IA32_EFER",
        0x3B: "IA32_TSC_ADJUST", 0x174: "IA32_SYSENTER_CS", 0x175: "IA32_SYSENTER_ESP", 0x176: "IA32_SYSENTER_EIP",
        0x1A0: "IA32_MISC_ENABLE", 0x277: "IA32_PAT", 0xC000_0081: "STAR", 0xC000_0082: "LSTAR",
        0xC000_0083: "CSTAR", 0xC000_0084: "SFMASK", 0xC000_0100: "FS_BASE", 0xC000_0101: "GS_BASE",
        0xC000_0102: "KERNEL_GS_BASE", 0xC000_0103: "TSC_AUX", 0x4B56_4D00: "KVM_WALL_CLOCK_NEW",
        kvmSystemTimeNew: "KVM_SYSTEM_TIME_NEW", 0x4B56_4D02: "KVM_ASYNC_PF_EN", 0x4B56_4D03: "KVM_STEAL_TIME",
        0x4B56_4D04: "KVM_PV_EOI_EN", 0x4B56_4D06: "KVM_ASYNC_PF_INT", 0x4B56_4D07: "KVM_ASYNC_PF_ACK",
    ]

    /// The KVM_SET_MSRS calls a restore makes, in order: every MSR but the TSC
    /// deadline in chunks of at most `chunkSize` (IA32_TSC among them), then the
    /// TSC deadline alone.
    public static func restoreChunks(_ msrs: [VCPUState.MSR]) -> [[VCPUState.MSR]] {
        let deferred = msrs.filter { $0.index == tscDeadline }
        let ordinary = msrs.filter { $0.index != tscDeadline }
        var chunks = stride(from: 0, to: ordinary.count, by: chunkSize).map {
            Array(ordinary[$0..<min($0 + chunkSize, ordinary.count)])
        }
        if !deferred.isEmpty { chunks.append(deferred) }
        return chunks
    }

    /// "0x6e0 (IA32_TSC_DEADLINE)", for error messages.
    public static func describe(_ index: UInt32) -> String {
        let hex = "0x" + String(index, radix: 16)
        return names[index].map { "\(hex) (\($0))" } ?? hex
    }
}

extension VCPU {
    /// Reads `indices` in chunks. KVM_GET_MSRS stops at the first MSR it cannot
    /// read and returns how many it read; that MSR is skipped (KVM lists MSRs
    /// that a given vCPU configuration may not have) and reading goes on after it.
    /// Returns the values read and the indices skipped.
    func readMSRs(_ indices: [UInt32]) throws -> (values: [VCPUState.MSR], skipped: [UInt32]) {
        var values: [VCPUState.MSR] = []
        var skipped: [UInt32] = []
        var rest = indices[...]
        while !rest.isEmpty {
            let chunk = Array(rest.prefix(MSRIndex.chunkSize))
            let read = try msrs(chunk)
            values += read.map { VCPUState.MSR(index: $0.index, value: $0.value) }
            if read.count < chunk.count {
                skipped.append(chunk[read.count])
                rest = rest.dropFirst(read.count + 1)
            } else {
                rest = rest.dropFirst(chunk.count)
            }
        }
        return (values, skipped)
    }

    /// Writes every MSR, in chunks, with IA32_TSC_DEADLINE alone in a last chunk
    /// after IA32_TSC: KVM converts the deadline against the guest TSC and arms
    /// the timer only once the LAPIC (restored before) is in deadline mode.
    /// KVM_SET_MSRS stops at the first MSR it refuses; that MSR is named in the error.
    func writeMSRs(_ msrs: [VCPUState.MSR]) throws {
        for chunk in MSRIndex.restoreChunks(msrs) {
            let written = try writeMSRs(chunk.map { ($0.index, $0.value) })
            guard written == chunk.count else {
                let refused = chunk[min(max(written, 0), chunk.count - 1)]
                throw VCPUStateError(message: "vCPU \(id): KVM_SET_MSRS refused MSR \(MSRIndex.describe(refused.index)) "
                    + "= 0x\(String(refused.value, radix: 16)) (\(written) of \(chunk.count) in its chunk applied)")
            }
        }
    }
}

extension [VCPUState.MSR] {
    /// A zero TSC deadline means "no timer armed" to the guest, but a vCPU saved
    /// between the deadline firing and the interrupt's delivery would then never
    /// get another timer interrupt after restore; a deadline equal to the TSC
    /// at save fires at once instead (Firecracker does the same).
    mutating func fixZeroTSCDeadline() {
        guard let tsc = first(where: { $0.index == MSRIndex.tsc })?.value else { return }
        for i in indices where self[i].index == MSRIndex.tscDeadline && self[i].value == 0 {
            self[i].value = tsc
        }
    }
}
