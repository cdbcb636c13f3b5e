import CKVM
import KVM

/// Caps on what a saved state may hold. A snapshot file is untrusted: every
/// count is checked against these before anything is built from it.
public enum StateLimits {
    /// KVM's own per-VM maximum on x86 (KVM_MAX_VCPUS) is 1024 in current kernels.
    public static let vcpus = 1024
    /// KVM_GET_MSR_INDEX_LIST returns a few hundred at most.
    public static let msrs = 4096
    /// KVM_MAX_CPUID_ENTRIES.
    public static let cpuidEntries = 256
    /// KVM_MAX_XCRS.
    public static let xcrs = 16
    /// Far above any XSAVE area today (AMX makes it about 11 KiB).
    public static let xsaveBytes = 64 << 10
    /// `kvm_vcpu_events` flags KVM defines (KVM_VCPUEVENT_VALID_*); anything else
    /// would be refused by KVM with a bare EINVAL.
    static let knownEventFlags = UInt32(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR
        | KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD
        | KVM_VCPUEVENT_VALID_TRIPLE_FAULT)
}

extension VCPUState {
    /// Checks every count and block size, so a restore either applies all of the
    /// state or fails before touching the vCPU.
    public func validate() throws {
        func fail(_ m: String) -> VCPUStateError { VCPUStateError(message: "vCPU \(id): \(m)") }
        guard (0..<StateLimits.vcpus).contains(id) else { throw fail("id out of range") }
        guard specialRegisters.interruptBitmap.count == MemoryLayout.size(ofValue: kvm_sregs().interrupt_bitmap) / 8 else {
            throw fail("interrupt bitmap has \(specialRegisters.interruptBitmap.count) words")
        }
        guard msrs.count <= StateLimits.msrs else { throw fail("\(msrs.count) MSRs (at most \(StateLimits.msrs))") }
        guard cpuid.count <= StateLimits.cpuidEntries else {
            throw fail("\(cpuid.count) CPUID entries (at most \(StateLimits.cpuidEntries))")
        }
        guard xcrs.count <= StateLimits.xcrs else { throw fail("\(xcrs.count) XCRs (at most \(StateLimits.xcrs))") }
        guard xsave.isEmpty || (VCPU.legacyXSAVESize...StateLimits.xsaveBytes).contains(xsave.count) else {
            throw fail("XSAVE area is \(xsave.count) bytes (expected \(VCPU.legacyXSAVESize)...\(StateLimits.xsaveBytes))")
        }
        if let d = debugRegisters, d.db.count != 4 { throw fail("\(d.db.count) debug address registers, expected 4") }
        try Self.checkSize(fpu, of: kvm_fpu.self, what: "FPU", vcpu: id)
        try Self.checkSize(localAPIC, of: kvm_lapic_state.self, what: "local APIC", vcpu: id)
        try Self.checkSize(events, of: kvm_vcpu_events.self, what: "vCPU events", vcpu: id)
        let flags = Self.value(kvm_vcpu_events(), from: events).flags
        guard flags & ~StateLimits.knownEventFlags == 0 else {
            throw fail("vCPU events carry unknown flags 0x\(String(flags, radix: 16))")
        }
    }

    static func checkSize<T>(_ bytes: [UInt8], of: T.Type, what: String, vcpu: Int) throws {
        guard bytes.count == MemoryLayout<T>.size else {
            throw VCPUStateError(message: "vCPU \(vcpu): \(what) block is \(bytes.count) bytes, KVM expects \(MemoryLayout<T>.size)")
        }
    }

    static func bytes<T>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value) { Array($0) }
    }

    /// The KVM structure in `bytes`; the caller has checked the size.
    static func value<T>(_ empty: T, from bytes: [UInt8]) -> T {
        var value = empty
        // SAFETY: copies at most MemoryLayout<T>.size bytes into a plain C struct.
        withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes.prefix($0.count)) }
        return value
    }
}
