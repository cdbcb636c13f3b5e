import GuestMemory
import KVM
import Logging

/// Which guest pages changed since the last look, from both writers: vCPUs
/// (KVM's dirty log, per memory slot) and the VMM itself (GuestMemory's
/// bitmaps; KVM does not see those writes). Bitmaps are global, one bit per
/// page in RAM-file order (the regions back to back), as MemorySender reads them.
final class DirtyPageTracker {
    let vm: VirtualMachine
    let memory: GuestMemory
    /// KVM_CLEAR_DIRTY_LOG in use (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 offered and enabled).
    private(set) var manualProtect = false
    private var logging = false
    var pages: Int { Int(memory.totalSize / 4096) }

    init(vm: VirtualMachine, memory: GuestMemory) {
        self.vm = vm
        self.memory = memory
    }

    /// Starts logging on every slot. The VMM's own bitmaps are zeroed here: every
    /// page is sent once after this, so only later writes matter.
    func start(log: Logger) throws {
        if vm.dirtyLogSupport.manualProtectFlags != 0 {
            do {
                try vm.enableManualDirtyLogProtect()
                manualProtect = true
            } catch {
                log.warning("migration: KVM offers manual dirty-log protect but refused it (\(error)); using KVM_GET_DIRTY_LOG alone")
            }
        }
        memory.writtenPages.clear()
        memory.handedOutPages.clear()
        try setLogging(true)
    }

    /// Stops logging (errors ignored: the VM runs on either way).
    func stop() {
        guard logging else { return }
        try? setLogging(false)
    }

    private func setLogging(_ on: Bool) throws {
        for (slot, r) in memory.regions.enumerated() {
            try vm.setDirtyLogging(on, slot: UInt32(slot), guestAddress: r.start.rawValue, size: r.size, hostAddress: r.hostAddress)
        }
        logging = on
    }

    /// The pages written since the previous harvest (or `start`). KVM's bits are
    /// cleared before the caller copies the pages, so a write after the copy is
    /// seen next time. `final` (the VM paused, devices quiet) adds every page the
    /// VMM handed out for zero-copy I/O since the start (see docs/migration.md).
    func harvest(final: Bool) throws -> [UInt64] {
        var global = [UInt64](repeating: 0, count: (pages + 63) / 64)
        for (slot, r) in memory.regions.enumerated() {
            let slotPages = Int(r.size / 4096)
            let bits = try vm.dirtyLog(slot: UInt32(slot), pages: slotPages)
            if manualProtect, bits.contains(where: { $0 != 0 }) {
                try vm.clearDirtyLog(slot: UInt32(slot), bitmap: bits, pages: slotPages)
            }
            Self.or(bits, pages: slotPages, into: &global, at: Int(r.fileOffset / 4096))
        }
        Self.or(memory.writtenPages.take(), pages: pages, into: &global, at: 0)
        if final { Self.or(memory.handedOutPages.peek(), pages: pages, into: &global, at: 0) }
        return global
    }

    /// ORs `bits` (pages 0..<pages) into `global` starting at page `offset`.
    static func or(_ bits: [UInt64], pages: Int, into global: inout [UInt64], at offset: Int) {
        if offset % 64 == 0 {
            let base = offset / 64
            for (i, w) in bits.enumerated() where w != 0 && base + i < global.count { global[base + i] |= w }
            return
        }
        for (i, w) in bits.enumerated() where w != 0 {
            for b in 0..<64 where w & (1 << UInt64(b)) != 0 {
                let page = offset + i * 64 + b
                guard i * 64 + b < pages, page / 64 < global.count else { continue }
                global[page / 64] |= 1 << UInt64(page % 64)
            }
        }
    }

    static func count(_ bitmap: [UInt64]) -> Int { bitmap.reduce(0) { $0 + $1.nonzeroBitCount } }
}

