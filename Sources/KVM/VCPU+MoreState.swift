import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// The vCPU state a snapshot needs beyond registers: CPUID, XSAVE, XCRs, debug
/// registers, TSC frequency, and an MSR write that reports how far it got.
extension VCPU {
    /// The size of `struct kvm_xsave` (KVM_GET_XSAVE's fixed 4 KiB region).
    public static let legacyXSAVESize = MemoryLayout<kvm_xsave>.size

    /// The CPUID table set on this vCPU with KVM_SET_CPUID2 (empty if none was set).
    public func cpuid() throws -> [kvm_cpuid_entry2] {
        var count: UInt32 = 64
        while true {
            guard let buffer = ckvm_cpuid2_alloc(count) else { throw KVMError("allocate kvm_cpuid2", errno: ENOMEM) }
            defer { free(buffer) }
            // SAFETY: `buffer` holds `count` entries and its nent says so; KVM writes at most nent.
            if ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_CPUID2, buffer) == 0 {
                let entries = ckvm_cpuid2_entries(buffer)!
                return (0..<Int(min(buffer.pointee.nent, count))).map { entries[$0] }
            }
            let e = errno
            if e == EINTR { continue }
            // E2BIG: the table is larger; KVM caps it at KVM_MAX_CPUID_ENTRIES (256).
            if e == E2BIG && count < 1024 { count *= 2; continue }
            throw KVMError("KVM_GET_CPUID2 on vCPU \(id)", errno: e)
        }
    }

    /// The XSAVE area: `size` bytes, KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) on the VM
    /// (at least 4096). Larger than 4096 only with dynamic features (AMX), and
    /// then only KVM_GET_XSAVE2 returns all of it.
    public func xsave(size: Int) throws -> [UInt8] {
        let size = max(size, VCPU.legacyXSAVESize)
        var bytes = [UInt8](repeating: 0, count: size)
        let request = size > VCPU.legacyXSAVESize ? CKVM_GET_XSAVE2 : CKVM_GET_XSAVE
        let name = size > VCPU.legacyXSAVESize ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE"
        try bytes.withUnsafeMutableBytes { raw in
            // SAFETY: the buffer is `size` bytes, the amount KVM writes for this request.
            _ = try retryingOnInterrupt("\(name) on vCPU \(id)") { ckvm_ioctl_pointer(fileDescriptor, request, raw.baseAddress) }
        }
        return bytes
    }

    /// Loads an XSAVE area. KVM reads as many bytes as KVM_CAP_XSAVE2 says, so
    /// `bytes` is zero-padded to `size` (components past the saved size stay in
    /// their init state: their XSTATE_BV bits are clear).
    public func setXSAVE(_ bytes: [UInt8], size: Int) throws {
        let size = max(size, VCPU.legacyXSAVESize)
        guard bytes.count <= size else {
            throw KVMError("KVM_SET_XSAVE (\(bytes.count)-byte area, this host's KVM takes \(size))", errno: EINVAL)
        }
        var buffer = bytes + [UInt8](repeating: 0, count: size - bytes.count)
        try buffer.withUnsafeMutableBytes { raw in
            // SAFETY: the buffer is `size` bytes, as many as KVM reads.
            _ = try retryingOnInterrupt("KVM_SET_XSAVE on vCPU \(id)") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_XSAVE, raw.baseAddress) }
        }
    }

    public func xcrs() throws -> kvm_xcrs {
        var xcrs = kvm_xcrs()
        try retryingOnInterrupt("KVM_GET_XCRS on vCPU \(id)") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_XCRS, &xcrs) }
        return xcrs
    }

    public func setXCRs(_ xcrs: kvm_xcrs) throws {
        var xcrs = xcrs
        try retryingOnInterrupt("KVM_SET_XCRS on vCPU \(id)") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_XCRS, &xcrs) }
    }

    public func debugRegisters() throws -> kvm_debugregs {
        var regs = kvm_debugregs()
        try retryingOnInterrupt("KVM_GET_DEBUGREGS on vCPU \(id)") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_DEBUGREGS, &regs) }
        return regs
    }

    public func setDebugRegisters(_ regs: kvm_debugregs) throws {
        var regs = regs
        try retryingOnInterrupt("KVM_SET_DEBUGREGS on vCPU \(id)") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_DEBUGREGS, &regs) }
    }

    /// The guest TSC frequency in kHz, or nil where KVM cannot tell: it answers
    /// EIO on hosts whose TSC is unstable (api.rst, KVM_GET_TSC_KHZ).
    public func tscKHz() throws -> UInt32? {
        while true {
            let r = ckvm_ioctl(fileDescriptor, CKVM_GET_TSC_KHZ)
            if r > 0 { return UInt32(r) }
            let e = errno
            if r < 0 && e == EINTR { continue }
            if r == 0 || e == EIO || e == ENOTTY { return nil }
            throw KVMError("KVM_GET_TSC_KHZ on vCPU \(id)", errno: e)
        }
    }

    /// Sets the guest TSC frequency (needs TSC scaling in the host CPU unless
    /// it equals the host's).
    public func setTSCKHz(_ khz: UInt32) throws {
        try retryingOnInterrupt("KVM_SET_TSC_KHZ on vCPU \(id)") { ckvm_ioctl_value(fileDescriptor, CKVM_SET_TSC_KHZ, UInt(khz)) }
    }

    /// KVM_SET_MSRS, returning how many entries KVM applied: it stops at the
    /// first MSR it refuses, so a count short of `values.count` names that MSR.
    public func writeMSRs(_ values: [(index: UInt32, value: UInt64)]) throws -> Int {
        guard !values.isEmpty else { return 0 }
        guard let buffer = ckvm_msrs_alloc(UInt32(values.count)) else { throw KVMError("allocate kvm_msrs", errno: ENOMEM) }
        defer { free(buffer) }
        // SAFETY: `buffer` was allocated with room for `values.count` entries.
        let entries = ckvm_msrs_entries(buffer)!
        for (i, v) in values.enumerated() { entries[i].index = v.index; entries[i].data = v.value }
        let written = try retryingOnInterrupt("KVM_SET_MSRS on vCPU \(id)") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_MSRS, buffer) }
        return Int(written)
    }
}
