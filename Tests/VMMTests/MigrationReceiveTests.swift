import CKVM
import Foundation
import GuestMemory
import KVM
import Migration
import Posix
import Testing
import VMState
@testable import VMM

/// The destination's checks that need no running VM: memory runs against the
/// memory map, the config against this host's CPU, and the dirty-bitmap merge.
struct MigrationReceiveTests {
    final class Bytes: ByteStream {
        var data: [UInt8]
        var at = 0
        init(_ data: [UInt8]) { self.data = data }
        func write(_ b: UnsafeRawBufferPointer) throws { data += b }
        func read(into b: UnsafeMutableRawBufferPointer) throws {
            guard data.count - at >= b.count else { throw ByteStreamError.endOfStream }
            Array(data[at..<(at + b.count)]).withUnsafeBytes { b.copyMemory(from: $0) }
            at += b.count
        }
        func flush() throws {}
        func close() {}
    }

    private func frame(_ run: MemoryRun, data: [UInt8] = []) -> (MigrationFrame.Header, Bytes) {
        (MigrationFrame.Header(kind: .memory, length: run.frameLength), Bytes(run.header() + data))
    }

    @Test func runsOutsideRAMAreRefusedAndRunsInsideLand() throws {
        // 1 MiB of RAM at 0 and 1 MiB at 4 MiB: a gap between them.
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20), (GuestAddress(4 << 20), 1 << 20)])
        var receiver = MemoryReceiver(memory: memory)
        let page = [UInt8](repeating: 0x5A, count: 4096)
        let (h, s) = frame(MemoryRun(guestAddress: 4 << 20, pages: 1, encoding: .data), data: page)
        try receiver.receive(h, from: s)
        #expect(try memory.read(from: GuestAddress(4 << 20), count: 4096) == page)
        let bad: [MemoryRun] = [
            MemoryRun(guestAddress: 1 << 20, pages: 1, encoding: .zero),              // in the gap
            MemoryRun(guestAddress: (1 << 20) - 4096, pages: 2, encoding: .data),     // runs off the region's end
            MemoryRun(guestAddress: 5 << 20, pages: 1, encoding: .zero),              // past the end of RAM
            MemoryRun(guestAddress: UInt64.max & ~4095, pages: 1 << 20, encoding: .zero),  // wraps
        ]
        for run in bad {
            let (h, s) = frame(run, data: run.encoding == .data ? [UInt8](repeating: 1, count: Int(run.byteCount)) : [])
            do {
                try receiver.receive(h, from: s)
                Issue.record("accepted \(run)")
            } catch let e as MigrationError {
                #expect(e.message.contains("not inside guest RAM"), "\(e.message)")
            }
        }
        // A zero marker clears a page that got data before.
        let (hz, sz) = frame(MemoryRun(guestAddress: 4 << 20, pages: 1, encoding: .zero))
        try receiver.receive(hz, from: sz)
        #expect(try memory.read(from: GuestAddress(4 << 20), count: 4096) == [UInt8](repeating: 0, count: 4096))
    }

    @Test func aTruncatedRunIsEndOfStream() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        var receiver = MemoryReceiver(memory: memory)
        let run = MemoryRun(guestAddress: 0, pages: 2, encoding: .data)
        let (h, s) = frame(run, data: [UInt8](repeating: 1, count: 5000))
        #expect(throws: ByteStreamError.endOfStream) { try receiver.receive(h, from: s) }
    }

    @Test func dirtyBitmapsMergeAtAnyPageOffset() {
        var global = [UInt64](repeating: 0, count: 4)
        DirtyPageTracker.or([0b1011], pages: 4, into: &global, at: 64)
        #expect(global == [0, 0b1011, 0, 0])
        DirtyPageTracker.or([1 << 63 | 1], pages: 64, into: &global, at: 70)
        #expect(global[1] == 0b1011 | 1 << 6)
        #expect(global[2] == 1 << 5)
        #expect(DirtyPageTracker.count(global) == 5)
    }

    @Test func theVMMsOwnWritesAreMarked() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20), (GuestAddress(4 << 20), 1 << 20)])
        memory.writtenPages.clear()
        try memory.write([1, 2, 3], to: GuestAddress(4 << 20 + 4095))   // straddles pages 256 and 257
        try memory.store(UInt32(7), to: GuestAddress(0x3000))
        let bits = memory.writtenPages.take()
        #expect(DirtyPageTracker.count(bits) == 3)
        #expect(bits[0] == 1 << 3)
        #expect(bits[4] == 0b11)
        #expect(DirtyPageTracker.count(memory.writtenPages.take()) == 0)
        _ = try memory.buffer(at: GuestAddress(0x5000), length: 10)
        #expect(memory.handedOutPages.isSet(5))
    }
}

@Suite(.enabled(if: FileManager.default.isWritableFile(atPath: "/dev/kvm"), "needs read/write access to /dev/kvm"))
struct MigrationHostCheckTests {
    @Test func featuresThisHostLacksAreRefusedByName() throws {
        let kvm = try KVM()
        let supported = try kvm.supportedCPUID()
        let vendor = MigrationHostCheck.vendor(of: supported)
        #expect(!vendor.isEmpty)
        let machine = SnapshotMachineConfig(kernelPath: "/k", initrdPath: nil, commandLine: "", cpuCount: 1, memorySize: 1 << 20,
                                            memoryMap: [.init(guestAddress: 0, size: 1 << 20, fileOffset: 0)], devices: [])
        var config = MigrationConfig(skiffVersion: "t", machine: machine, cpuVendor: vendor,
                                     guestCPUID: supported.map { VCPUState.CPUIDEntry($0) }, xsaveSize: 4096, tscKHz: nil)
        try MigrationHostCheck.check(config, offered: supported, hostVendor: vendor, xsaveSize: 4096)

        var leaf7 = try #require(config.guestCPUID.firstIndex { $0.function == 7 && $0.index == 0 })
        config.guestCPUID[leaf7].ebx = ~0
        do {
            try MigrationHostCheck.check(config, offered: supported, hostVendor: vendor, xsaveSize: 4096)
            Issue.record("every leaf-7 feature accepted")
        } catch let e as MigrationError {
            #expect(e.kind == .refused)
            #expect(e.message.contains("CPUID 0x7.0 ebx bits"), "\(e.message)")
        }
        leaf7 = 0
        config.cpuVendor = "CyrixInstead"
        #expect(throws: MigrationError.self) { try MigrationHostCheck.check(config, offered: supported, hostVendor: vendor, xsaveSize: 4096) }
        config.cpuVendor = vendor
        config.guestCPUID = []
        #expect(throws: MigrationError.self) { try MigrationHostCheck.check(config, offered: supported, hostVendor: vendor, xsaveSize: 8192) }
    }

    @Test func dirtyLogSupportOnThisHost() throws {
        let kvm = try KVM()
        let vm = try kvm.createVM()
        let support = vm.dirtyLogSupport
        print("dirty log on this host: \(support)")
        // Whatever KVM offers, the tracker works with it: log one slot, read it, stop.
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 1 << 20)])
        try vm.setUserMemoryRegion(slot: 0, guestAddress: 0, size: 1 << 20, hostAddress: memory.regions[0].hostAddress)
        let tracker = DirtyPageTracker(vm: vm, memory: memory)
        try tracker.start(log: .init(label: "test"))
        try memory.write([1], to: GuestAddress(0x7000))   // a VMM write: KVM does not see it, the tracker does
        let bits = try tracker.harvest(final: false)
        #expect(bits[0] == 1 << 7)
        #expect(tracker.manualProtect == (support.manualProtectFlags != 0))
        tracker.stop()
    }
}
