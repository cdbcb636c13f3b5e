import CKVM

/// Why KVM_RUN returned to user space, decoded from `kvm_run`.
public enum VCPUExit {
    /// Port I/O. For an `out`, `data` holds the bytes to consume; for an `in`,
    /// fill `data` before the next run. `count` > 1 for `rep ins/outs`: `data`
    /// then holds `count` items of `size` bytes back to back.
    case io(port: UInt16, isWrite: Bool, size: Int, count: Int, data: UnsafeMutableRawBufferPointer)
    /// An access to guest-physical memory with no RAM behind it.
    case mmio(address: UInt64, isWrite: Bool, data: UnsafeMutableRawBufferPointer)
    case halt
    /// Triple fault or similar: the guest reset itself.
    case shutdown
    /// KVM_SYSTEM_EVENT: shutdown, reset or crash requested through a firmware interface.
    case systemEvent(type: UInt32)
    /// KVM could not run the guest (e.g. an instruction it cannot emulate).
    case internalError(suberror: UInt32, data: [UInt64])
    case failEntry(reason: UInt64)
    /// KVM_RUN was interrupted by a signal (a kick from another thread).
    case interrupted
    case other(reason: UInt32)

    init(run: UnsafeMutablePointer<kvm_run>) {
        let raw = UnsafeMutableRawPointer(run)
        switch Int32(run.pointee.exit_reason) {
        case KVM_EXIT_IO:
            let io = run.pointee.io
            let size = Int(io.size), count = Int(io.count)
            let data = UnsafeMutableRawBufferPointer(start: raw + Int(io.data_offset), count: size * count)
            self = .io(port: io.port, isWrite: io.direction == UInt8(KVM_EXIT_IO_OUT),
                       size: size, count: count, data: data)
        case KVM_EXIT_MMIO:
            let length = Int(min(run.pointee.mmio.len, 8))
            let data = UnsafeMutableRawBufferPointer(start: ckvm_run_mmio_data(run), count: length)
            self = .mmio(address: run.pointee.mmio.phys_addr, isWrite: run.pointee.mmio.is_write != 0, data: data)
        case KVM_EXIT_HLT:
            self = .halt
        case KVM_EXIT_SHUTDOWN:
            self = .shutdown
        case KVM_EXIT_SYSTEM_EVENT:
            self = .systemEvent(type: run.pointee.system_event.type)
        case KVM_EXIT_INTERNAL_ERROR:
            let e = run.pointee.internal
            let n = Int(min(e.ndata, 16))
            let data = withUnsafeBytes(of: e.data) { Array($0.bindMemory(to: UInt64.self).prefix(n)) }
            self = .internalError(suberror: e.suberror, data: data)
        case KVM_EXIT_FAIL_ENTRY:
            self = .failEntry(reason: run.pointee.fail_entry.hardware_entry_failure_reason)
        case KVM_EXIT_INTR:
            self = .interrupted
        default:
            self = .other(reason: run.pointee.exit_reason)
        }
    }
}
