import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// One virtual CPU: its fd, the shared `kvm_run` area, and register access.
/// `run()` must be called from the vCPU's own thread; the accessors may be used
/// from any thread while the vCPU is not running.
public final class VCPU: @unchecked Sendable {  // Sound because: all `let`; other threads touch `kvm_run` only by the atomic immediate_exit store.
    public let fileDescriptor: Int32
    public let id: Int
    private let runArea: UnsafeMutableRawPointer
    private let runAreaSize: Int

    init(fileDescriptor: Int32, id: Int, mmapSize: Int) throws {
        let p = mmap(nil, mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fileDescriptor, 0)
        guard let p, p != MAP_FAILED else { throw KVMError("mmap kvm_run of vCPU \(id)", errno: errno) }
        self.fileDescriptor = fileDescriptor
        self.id = id
        self.runArea = p
        self.runAreaSize = mmapSize
    }

    deinit {
        munmap(runArea, runAreaSize)
        close(fileDescriptor)
    }

    private var shared: UnsafeMutablePointer<kvm_run> { ckvm_run(runArea) }

    /// Enters the guest until it exits to user space. A signal that interrupts
    /// KVM_RUN (a "kick") yields `.interrupted`.
    public func run() throws -> VCPUExit {
        if ckvm_ioctl(fileDescriptor, CKVM_RUN) < 0 {
            let e = errno
            if e == EINTR || e == EAGAIN {
                ckvm_run_set_immediate_exit(shared, 0)
                return .interrupted
            }
            throw KVMError("KVM_RUN on vCPU \(id)", errno: e)
        }
        return VCPUExit(run: shared)
    }

    /// Finishes the instruction of the last port-I/O or MMIO exit without running
    /// any further guest code: KVM advances RIP past an OUT (or stores an IN's
    /// data) only on the next KVM_RUN, so state read right after such an exit
    /// would replay the access on restore (a serial character printed twice).
    /// KVM_RUN with immediate_exit set completes it and returns EINTR at once.
    /// Only while no thread runs this vCPU (paused).
    public func completePendingIO() throws {
        ckvm_run_set_immediate_exit(shared, 1)
        defer { ckvm_run_set_immediate_exit(shared, 0) }
        if ckvm_ioctl(fileDescriptor, CKVM_RUN) < 0 {
            let e = errno
            if e == EINTR || e == EAGAIN { return }
            throw KVMError("KVM_RUN (completing I/O) on vCPU \(id)", errno: e)
        }
        throw KVMError("KVM_RUN (completing I/O) on vCPU \(id) entered the guest; exit reason \(shared.pointee.exit_reason)", errno: 0)
    }

    /// Tells the guest's kvmclock that the host stopped this vCPU (a pause), so
    /// its watchdogs do not report a soft lockup for the time it was stopped.
    /// Returns false when the guest does not use kvmclock (KVM says EINVAL).
    @discardableResult
    public func notifyHostPause() throws -> Bool {
        if ckvm_ioctl(fileDescriptor, CKVM_KVMCLOCK_CTRL) == 0 { return true }
        let e = errno
        if e == EINVAL { return false }
        throw KVMError("KVM_KVMCLOCK_CTRL on vCPU \(id)", errno: e)
    }

    /// Makes the next (or current) KVM_RUN return at once; pair with a signal to
    /// the vCPU thread so a run already inside the guest is interrupted too.
    public func requestImmediateExit() {
        ckvm_run_set_immediate_exit(shared, 1)  // atomic: the vCPU thread clears it concurrently
    }

    // MARK: - Registers

    public func registers() throws -> kvm_regs {
        var regs = kvm_regs()
        try retryingOnInterrupt("KVM_GET_REGS") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_REGS, &regs) }
        return regs
    }

    public func setRegisters(_ regs: kvm_regs) throws {
        var regs = regs
        try retryingOnInterrupt("KVM_SET_REGS") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_REGS, &regs) }
    }

    public func specialRegisters() throws -> kvm_sregs {
        var sregs = kvm_sregs()
        try retryingOnInterrupt("KVM_GET_SREGS") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_SREGS, &sregs) }
        return sregs
    }

    public func setSpecialRegisters(_ sregs: kvm_sregs) throws {
        var sregs = sregs
        try retryingOnInterrupt("KVM_SET_SREGS") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_SREGS, &sregs) }
    }

    public func fpu() throws -> kvm_fpu {
        var fpu = kvm_fpu()
        try retryingOnInterrupt("KVM_GET_FPU") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_FPU, &fpu) }
        return fpu
    }

    public func setFPU(_ fpu: kvm_fpu) throws {
        var fpu = fpu
        try retryingOnInterrupt("KVM_SET_FPU") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_FPU, &fpu) }
    }

    public func setCPUID(_ entries: [kvm_cpuid_entry2]) throws {
        guard let buffer = ckvm_cpuid2_alloc(UInt32(entries.count)) else { throw KVMError("allocate kvm_cpuid2", errno: ENOMEM) }
        defer { free(buffer) }
        let slots = ckvm_cpuid2_entries(buffer)!
        for (i, e) in entries.enumerated() { slots[i] = e }
        try retryingOnInterrupt("KVM_SET_CPUID2") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_CPUID2, buffer) }
    }

    /// Reads the given MSRs; MSRs KVM does not know are left out of the result.
    public func msrs(_ indices: [UInt32]) throws -> [(index: UInt32, value: UInt64)] {
        guard !indices.isEmpty else { return [] }
        guard let buffer = ckvm_msrs_alloc(UInt32(indices.count)) else { throw KVMError("allocate kvm_msrs", errno: ENOMEM) }
        defer { free(buffer) }
        let entries = ckvm_msrs_entries(buffer)!
        for (i, index) in indices.enumerated() { entries[i].index = index }
        let read = try retryingOnInterrupt("KVM_GET_MSRS") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_MSRS, buffer) }
        return (0..<Int(read)).map { (entries[$0].index, entries[$0].data) }
    }

    public func setMSRs(_ values: [(index: UInt32, value: UInt64)]) throws {
        guard !values.isEmpty else { return }
        guard let buffer = ckvm_msrs_alloc(UInt32(values.count)) else { throw KVMError("allocate kvm_msrs", errno: ENOMEM) }
        defer { free(buffer) }
        let entries = ckvm_msrs_entries(buffer)!
        for (i, v) in values.enumerated() { entries[i].index = v.index; entries[i].data = v.value }
        let written = try retryingOnInterrupt("KVM_SET_MSRS") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_MSRS, buffer) }
        guard written == values.count else {
            let failed = values[Int(written)].index
            throw KVMError("KVM_SET_MSRS (MSR 0x\(String(failed, radix: 16)) refused)", errno: EINVAL)
        }
    }

    public func localAPIC() throws -> kvm_lapic_state {
        var state = kvm_lapic_state()
        try retryingOnInterrupt("KVM_GET_LAPIC") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_LAPIC, &state) }
        return state
    }

    public func setLocalAPIC(_ state: kvm_lapic_state) throws {
        var state = state
        try retryingOnInterrupt("KVM_SET_LAPIC") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_LAPIC, &state) }
    }

    public func mpState() throws -> UInt32 {
        var state = kvm_mp_state()
        try retryingOnInterrupt("KVM_GET_MP_STATE") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_MP_STATE, &state) }
        return state.mp_state
    }

    public func setMPState(_ value: UInt32) throws {
        var state = kvm_mp_state(mp_state: value)
        try retryingOnInterrupt("KVM_SET_MP_STATE") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_MP_STATE, &state) }
    }

    public func events() throws -> kvm_vcpu_events {
        var events = kvm_vcpu_events()
        try retryingOnInterrupt("KVM_GET_VCPU_EVENTS") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_VCPU_EVENTS, &events) }
        return events
    }

    public func setEvents(_ events: kvm_vcpu_events) throws {
        var events = events
        try retryingOnInterrupt("KVM_SET_VCPU_EVENTS") { ckvm_ioctl_pointer(fileDescriptor, CKVM_SET_VCPU_EVENTS, &events) }
    }

    /// A one-line dump of the registers that matter when a guest dies.
    public func registerSummary() -> String {
        guard let r = try? registers(), let s = try? specialRegisters() else { return "vCPU \(id): registers unavailable" }
        func h(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        return "vCPU \(id): rip=\(h(r.rip)) rsp=\(h(r.rsp)) rflags=\(h(r.rflags)) rax=\(h(r.rax)) rbx=\(h(r.rbx)) "
            + "rcx=\(h(r.rcx)) rdx=\(h(r.rdx)) rsi=\(h(r.rsi)) rdi=\(h(r.rdi)) rbp=\(h(r.rbp)) "
            + "cr0=\(h(s.cr0)) cr2=\(h(s.cr2)) cr3=\(h(s.cr3)) cr4=\(h(s.cr4)) efer=\(h(s.efer)) "
            + "cs=\(h(UInt64(s.cs.selector))) cpl=\(s.cs.dpl)"
    }
}
