import CKVM
import Devices
import Foundation
import KVM
@testable import Virtio
@testable import VMState

/// True where /dev/kvm can be opened read/write.
let kvmAvailable = (try? KVM()) != nil

/// A VM as Skiff builds one for a snapshot: in-kernel irqchip and PIT, then vCPUs.
func makeVM(_ kvm: KVM, vcpus: Int = 1) throws -> (VirtualMachine, [VCPU]) {
    let vm = try kvm.createVM()
    try vm.createIRQChip()
    try vm.createPIT()
    let list = try (0..<vcpus).map { try vm.createVCPU(id: $0) }
    return (vm, list)
}

/// A fresh directory under the temporary directory, removed at deinit.
final class TemporaryDirectory {
    let url: URL
    init() {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("vmstate-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func child(_ name: String) -> URL { url.appendingPathComponent(name) }
}

/// Machine states and configs built without KVM, with blocks of KVM's exact
/// sizes and distinct values, for the container tests.
enum Fixtures {
    static let segment = VCPUState.Segment(base: 0x1000, limit: 0xFFFF_FFFF, selector: 0x10, type: 11, present: 1, dpl: 0,
                                           db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0)

    static func vcpu(_ id: Int) -> VCPUState {
        let pattern = { (n: Int, seed: Int) in (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) } }
        var events = [UInt8](repeating: 0, count: MemoryLayout<kvm_vcpu_events>.size)
        events[0] = 1  // exception.injected; flags stay zero
        return VCPUState(
            id: id,
            registers: .init(rax: 0x1122_3344_5566_7788, rbx: 2, rcx: 3, rdx: 4, rsi: 5, rdi: 6, rsp: 0x8000, rbp: 8,
                             r8: 9, r9: 10, r10: 11, r11: 12, r12: 13, r13: 14, r14: 15, r15: UInt64(id),
                             rip: 0xFFFF_FFFF_8100_0000, rflags: 0x202),
            specialRegisters: .init(cs: segment, ds: segment, es: segment, fs: segment, gs: segment, ss: segment,
                                    tr: segment, ldt: segment, gdtBase: 0x500, gdtLimit: 0x27, idtBase: 0x600, idtLimit: 0xFFF,
                                    cr0: 0x8000_0011, cr2: 0, cr3: 0x9000, cr4: 0x20, cr8: 0, efer: 0x500, apicBase: 0xFEE0_0900,
                                    interruptBitmap: [0, 0, 0, 0]),
            msrs: [.init(index: MSRIndex.tsc, value: 123_456_789), .init(index: MSRIndex.tscDeadline, value: 123_456_789),
                   .init(index: 0x174, value: 0x10)],
            mpState: 0, fpu: pattern(MemoryLayout<kvm_fpu>.size, id),
            localAPIC: pattern(MemoryLayout<kvm_lapic_state>.size, id + 1), events: events,
            cpuid: [.init(function: 0, index: 0, flags: 0, eax: 0xD, ebx: 0x756E_6547, ecx: 0x6C65_746E, edx: 0x4965_6E69)],
            xsave: pattern(VCPU.legacyXSAVESize, id + 2), xcrs: [.init(index: 0, value: 3)],
            debugRegisters: .init(db: [1, 2, 3, 4], dr6: 0xFFFF_0FF0, dr7: 0x400, flags: 0), tscKHz: 2_000_000)
    }

    static func platform() -> KVMPlatformState {
        KVMPlatformState(picMaster: [UInt8](repeating: 1, count: KVMPlatformState.chipSize),
                         picSlave: [UInt8](repeating: 2, count: KVMPlatformState.chipSize),
                         ioapic: [UInt8](repeating: 3, count: KVMPlatformState.chipSize),
                         pit: [UInt8](repeating: 4, count: MemoryLayout<kvm_pit_state2>.size),
                         clock: .init(clock: 5_000_000_000, flags: 6, realtime: 1_700_000_000_000_000_000, hostTSC: 99))
    }

    static func devices() -> DeviceStates {
        var serial = Serial8250.State()
        serial.interruptEnable = 3
        serial.receiveBuffer = Array("hello".utf8)
        var queue = QueueState(maxSize: 256)
        queue.ready = true; queue.descriptorTable = 0x10_0000; queue.availRing = 0x10_1000; queue.usedRing = 0x10_2000
        queue.nextAvail = 7; queue.nextUsed = 7
        let block = VirtioTransportState(deviceType: VirtioDeviceType.block, status: 15, deviceFeaturesSel: 0, driverFeaturesSel: 1,
                                         driverFeatures: 1 << 32, queueSel: 0, interruptStatus: 1, configGeneration: 0,
                                         queues: [queue])
        let net = VirtioTransportState(deviceType: VirtioDeviceType.net, status: 0, deviceFeaturesSel: 0, driverFeaturesSel: 0,
                                       driverFeatures: 0, queueSel: 0, interruptStatus: 0, configGeneration: 0,
                                       queues: [QueueState(maxSize: 256), QueueState(maxSize: 256)])
        return DeviceStates(serial: serial, virtio: [
            VirtioDeviceState(mmioBase: 0xD000_0000, gsi: 5, transport: block, backend: .block(capacitySectors: 2048, readOnly: false)),
            VirtioDeviceState(mmioBase: 0xD000_1000, gsi: 6, transport: net, backend: .net(mac: [2, 0, 0, 0, 0, 1])),
        ])
    }

    static func state(vcpus: Int = 2) -> MachineState {
        MachineState(vcpus: (0..<vcpus).map(vcpu), platform: platform(), devices: devices())
    }

    /// 64 KiB low, 128 KiB from 1 MiB: two ranges, like RAM split around a hole.
    static func machine(cpus: Int = 2) -> SnapshotMachineConfig {
        SnapshotMachineConfig(
            kernelPath: "/boot/vmlinux", initrdPath: nil, commandLine: "console=ttyS0", cpuCount: cpus, memorySize: 192 << 10,
            memoryMap: [.init(guestAddress: 0, size: 64 << 10, fileOffset: 0),
                        .init(guestAddress: 0x10_0000, size: 128 << 10, fileOffset: 64 << 10)],
            devices: [.init(kind: "serial", address: 0x3F8, gsi: 4), .init(kind: "i8042", address: 0x60),
                      .init(kind: "virtio-block", address: 0xD000_0000, gsi: 5, path: "/tmp/disk.qcow2", readOnly: false),
                      .init(kind: "virtio-net", address: 0xD000_1000, gsi: 6, tap: "skiff0", mac: "02:00:00:00:00:01")])
    }

    static func memory(size: Int = 192 << 10) -> [UInt8] {
        (0..<size).map { UInt8(truncatingIfNeeded: $0 ^ ($0 >> 9)) }
    }

    /// Writes a complete, valid snapshot into `dir` and returns its manifest.
    @discardableResult
    static func writeSnapshot(to dir: URL, state: MachineState = Fixtures.state(),
                              machine: SnapshotMachineConfig = Fixtures.machine()) throws -> SnapshotManifest {
        let writer = try SnapshotWriter(directory: dir)
        try Data(memory(size: Int(machine.memorySize))).write(to: writer.memoryFileURL)
        return try writer.finish(state: state, machine: machine, skiffVersion: "test",
                                 createdAt: Date(timeIntervalSince1970: 1_800_000_000))
    }
}
