import CKVM
import KVM

/// What KVM holds for the VM as a whole rather than per vCPU: the in-kernel
/// interrupt controllers (PIC pair, IOAPIC), the i8254 PIT and the kvmclock.
/// The controllers and PIT are kept as KVM's exact bytes, size-checked on restore.
public struct KVMPlatformState: Codable, Equatable, Sendable {
    public static let version = 1

    /// KVM_GET_CLOCK's answer, plus the wall time it belongs to.
    public struct Clock: Codable, Equatable, Sendable {
        /// kvmclock nanoseconds.
        public var clock: UInt64
        /// KVM's flags (KVM_CLOCK_TSC_STABLE, _REALTIME, _HOST_TSC).
        public var flags: UInt32
        /// CLOCK_REALTIME in ns at the moment `clock` was read: KVM's own pairing
        /// when `flags` has KVM_CLOCK_REALTIME (hosts whose clocksource is the
        /// TSC), else read by Skiff right after KVM_GET_CLOCK (off by microseconds).
        public var realtime: UInt64
        /// Meaningful only when `flags` has KVM_CLOCK_HOST_TSC.
        public var hostTSC: UInt64

        public var realtimeFromKVM: Bool { flags & UInt32(KVM_CLOCK_REALTIME) != 0 }
    }

    public var formatVersion: Int = KVMPlatformState.version
    /// The 512-byte `kvm_irqchip` payload of each chip (`kvm_pic_state` / `kvm_ioapic_state`).
    public var picMaster: [UInt8]
    public var picSlave: [UInt8]
    public var ioapic: [UInt8]
    /// `kvm_pit_state2`.
    public var pit: [UInt8]
    public var clock: Clock

    /// Bytes of one chip payload (the union in `struct kvm_irqchip`).
    static let chipSize = MemoryLayout.size(ofValue: kvm_irqchip().chip)

    /// Checks every block's size before anything is applied.
    public func validate() throws {
        guard formatVersion >= 1 && formatVersion <= KVMPlatformState.version else {
            throw PlatformStateError(message: "platform state version \(formatVersion); this build reads 1...\(KVMPlatformState.version)")
        }
        for (name, bytes) in [("PIC master", picMaster), ("PIC slave", picSlave), ("IOAPIC", ioapic)]
        where bytes.count != Self.chipSize {
            throw PlatformStateError(message: "\(name) block is \(bytes.count) bytes, KVM expects \(Self.chipSize)")
        }
        guard pit.count == MemoryLayout<kvm_pit_state2>.size else {
            throw PlatformStateError(message: "PIT block is \(pit.count) bytes, KVM expects \(MemoryLayout<kvm_pit_state2>.size)")
        }
    }
}

/// How the guest's kvmclock continues after a restore.
public enum ClockRestore: String, Codable, Sendable {
    /// The clock resumes at the value it had at save: the guest sees no time
    /// pass while it was stopped (QEMU's and Firecracker's default; no jump in
    /// the monotonic clock).
    case frozen
    /// The clock is advanced by the wall time elapsed since the save: KVM_SET_CLOCK
    /// with KVM_CLOCK_REALTIME and the saved `realtime`. Needs a host KVM that
    /// takes KVM_CLOCK_REALTIME (KVM_CAP_ADJUST_CLOCK, Linux 5.16+) and wall
    /// clocks that agree between the saving and the restoring host.
    case advancedByElapsedRealTime
}

/// Why saved platform state cannot be applied.
public struct PlatformStateError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { "invalid VM platform state: \(message)" }
}
