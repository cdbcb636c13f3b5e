import CKVM
import Foundation
import KVM
import Testing
@testable import VMState

/// The VM-wide KVM state (PICs, IOAPIC, PIT, kvmclock) on a real VM.
@Suite(.enabled(if: kvmAvailable, "needs read/write access to /dev/kvm"))
struct PlatformStateKVMTests {
    /// Bytes of one `kvm_pit_channel_state`; its last 8 are `count_load_time`,
    /// a host timestamp KVM sets anew on every load.
    static let pitChannelSize = 24

    static func withoutLoadTimes(_ pit: [UInt8]) -> [UInt8] {
        var p = pit
        for c in 0..<3 { for i in 16..<24 { p[c * pitChannelSize + i] = 0 } }
        return p
    }

    /// PIC master IMR, an IOAPIC redirection entry and PIT channel 1 set to
    /// values a fresh VM does not have. (Channel 1 so that no PIT timer runs and
    /// raises IRQ 0 between the two saves.)
    static func prepare(_ vm: VirtualMachine) throws {
        var master = try vm.irqChip(UInt32(KVM_IRQCHIP_PIC_MASTER))
        master.chip.pic.imr = 0xA5
        try vm.setIRQChip(master)
        var ioapic = try vm.irqChip(UInt32(KVM_IRQCHIP_IOAPIC))
        withUnsafeMutableBytes(of: &ioapic.chip) { raw in
            raw.storeBytes(of: UInt64(0x1_0031), toByteOffset: 24 + 3 * 8, as: UInt64.self)  // redirtbl[3]: masked, vector 0x31
        }
        try vm.setIRQChip(ioapic)
        var pit = try vm.pit()
        pit.channels.1.count = 0x1234
        pit.channels.1.mode = 2
        pit.channels.1.rw_mode = 3
        try vm.setPIT(pit)
    }

    @Test func roundTripsIntoAFreshVM() throws {
        let kvm = try KVM()
        let (source, _) = try makeVM(kvm)
        try Self.prepare(source)
        let saved = try source.savePlatformState()
        #expect(saved.picMaster[2] == 0xA5, "kvm_pic_state.imr is its third byte")

        let decoded = try JSONDecoder().decode(KVMPlatformState.self, from: JSONEncoder().encode(saved))
        #expect(decoded == saved)

        let (target, _) = try makeVM(kvm)
        let fresh = try target.savePlatformState()
        #expect(fresh.picMaster != saved.picMaster)
        #expect(fresh.ioapic != saved.ioapic)
        try target.restorePlatformState(decoded, clock: .frozen)
        let again = try target.savePlatformState()
        #expect(again.picMaster == saved.picMaster)
        #expect(again.picSlave == saved.picSlave)
        #expect(again.ioapic == saved.ioapic)
        #expect(Self.withoutLoadTimes(again.pit) == Self.withoutLoadTimes(saved.pit))
    }

    @Test func frozenClockResumesAtTheSavedValue() throws {
        let kvm = try KVM()
        let (source, _) = try makeVM(kvm)
        let saved = try source.savePlatformState()
        Thread.sleep(forTimeInterval: 0.3)
        let (target, _) = try makeVM(kvm)
        let applied = try target.restorePlatformState(saved, clock: .frozen)
        #expect(applied == .frozen)
        let now = try target.clock().clock
        #expect(now >= saved.clock.clock)
        #expect(now - saved.clock.clock < 200_000_000, "frozen: the 300 ms between save and restore must not show")
    }

    @Test func advancedClockAddsTheElapsedRealTime() throws {
        let kvm = try KVM()
        let (source, _) = try makeVM(kvm)
        let saved = try source.savePlatformState()
        Thread.sleep(forTimeInterval: 0.3)
        let (target, _) = try makeVM(kvm)
        let applied = try target.restorePlatformState(saved, clock: .advancedByElapsedRealTime)
        let now = try target.clock().clock
        #expect(saved.clock.realtime != 0, "the wall time is recorded even where KVM does not pair it")
        if UInt32(kvm.check(KVM_CAP_ADJUST_CLOCK)) & UInt32(KVM_CLOCK_REALTIME) != 0 {
            #expect(applied == .advancedByElapsedRealTime)
            #expect(now - saved.clock.clock >= 300_000_000)
            #expect(now - saved.clock.clock < 2_000_000_000)
        } else {
            // A KVM without KVM_CLOCK_REALTIME: the restore falls back and says so.
            #expect(applied == .frozen)
            #expect(now - saved.clock.clock < 200_000_000)
        }
    }

    @Test func blocksOfTheWrongSizeAreRefusedBeforeAnyChange() throws {
        let kvm = try KVM()
        let (source, _) = try makeVM(kvm)
        try Self.prepare(source)
        var saved = try source.savePlatformState()
        saved.ioapic.removeLast()
        let (target, _) = try makeVM(kvm)
        let before = try target.savePlatformState()
        #expect(throws: PlatformStateError.self) { try target.restorePlatformState(saved, clock: .frozen) }
        #expect(try target.savePlatformState().picMaster == before.picMaster)
        saved = try source.savePlatformState()
        saved.formatVersion = KVMPlatformState.version + 1
        #expect(throws: PlatformStateError.self) { try target.restorePlatformState(saved, clock: .frozen) }
    }
}
