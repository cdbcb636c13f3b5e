import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// KVM's dirty-page log: which guest pages vCPUs wrote since the last look.
/// Only vCPU writes are logged; what the VMM writes into guest RAM is not
/// (GuestMemory keeps its own bitmap for that).
extension VirtualMachine {
    /// How this host's KVM can report dirty pages.
    public struct DirtyLogSupport: Sendable, Equatable, CustomStringConvertible {
        /// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2's value: the flags it accepts (0 = absent).
        public var manualProtectFlags: Int32

        public var description: String {
            manualProtectFlags != 0
                ? "KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG (manual protect, flags 0x\(String(manualProtectFlags, radix: 16)))"
                : "KVM_GET_DIRTY_LOG (clears as it reads; no manual protect)"
        }
    }

    public var dirtyLogSupport: DirtyLogSupport {
        DirtyLogSupport(manualProtectFlags: kvm.check(Int32(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)))
    }

    /// Turns on manual protect: from now on KVM_GET_DIRTY_LOG leaves the bits and
    /// the write protection alone, and `clearDirtyLog` re-arms what was read.
    /// Must be enabled before logging starts on any slot.
    public func enableManualDirtyLogProtect() throws {
        var cap = kvm_enable_cap()
        cap.cap = UInt32(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)
        cap.args.0 = UInt64(KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)
        try retryingOnInterrupt("KVM_ENABLE_CAP MANUAL_DIRTY_LOG_PROTECT2") {
            ckvm_ioctl_pointer(fileDescriptor, CKVM_ENABLE_CAP, &cap)
        }
    }

    /// Re-registers a slot (same place, same memory) with dirty logging on or off.
    public func setDirtyLogging(_ on: Bool, slot: UInt32, guestAddress: UInt64, size: UInt64,
                                hostAddress: UnsafeMutableRawPointer) throws {
        try setUserMemoryRegion(slot: slot, guestAddress: guestAddress, size: size, hostAddress: hostAddress,
                                logDirtyPages: on)
    }

    /// The dirty-page bitmap of a slot (one bit per 4 KiB page, bit i of word
    /// i/64). Without manual protect KVM clears it and re-protects the pages as it
    /// reads; with it, call `clearDirtyLog` for what will be copied.
    public func dirtyLog(slot: UInt32, pages: Int) throws -> [UInt64] {
        var bitmap = [UInt64](repeating: 0, count: (pages + 63) / 64)
        try bitmap.withUnsafeMutableBytes { bytes in
            var log = kvm_dirty_log()
            log.slot = slot
            log.dirty_bitmap = bytes.baseAddress
            try retryingOnInterrupt("KVM_GET_DIRTY_LOG slot \(slot)") {
                ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_DIRTY_LOG, &log)
            }
        }
        return bitmap
    }

    /// Clears (and write-protects again) the pages set in `bitmap`, which
    /// starts at page 0 of the slot. Clear *before* copying a page, so a write
    /// after the copy is logged again.
    public func clearDirtyLog(slot: UInt32, bitmap: [UInt64], pages: Int) throws {
        guard pages > 0 else { return }
        var bits = bitmap
        // KVM wants num_pages a multiple of 64 unless the range ends at the slot's end; it does here.
        try bits.withUnsafeMutableBytes { bytes in
            var clear = kvm_clear_dirty_log()
            clear.slot = slot
            clear.num_pages = UInt32(pages)
            clear.first_page = 0
            clear.dirty_bitmap = bytes.baseAddress
            try retryingOnInterrupt("KVM_CLEAR_DIRTY_LOG slot \(slot)") {
                ckvm_ioctl_pointer(fileDescriptor, CKVM_CLEAR_DIRTY_LOG, &clear)
            }
        }
    }
}
