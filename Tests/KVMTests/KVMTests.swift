import CKVM
import Testing
@testable import KVM

enum KVMHost {
    static var usable: Bool { (try? KVM()) != nil }
}

@Suite(.enabled(if: KVMHost.usable, "needs read/write access to /dev/kvm"))
struct KVMTests {
    @Test func createsAVMWithIrqchipAndAVCPU() throws {
        let kvm = try KVM()
        #expect(kvm.check(KVM_CAP_IRQCHIP) > 0)
        #expect(kvm.check(KVM_CAP_USER_MEMORY) > 0)
        #expect(try kvm.vcpuMmapSize() >= 4096)
        let vm = try kvm.createVM()
        try vm.createIRQChip()
        try vm.createPIT()
        let vcpu = try vm.createVCPU(id: 0)
        var regs = try vcpu.registers()
        regs.rip = 0x1234
        regs.rflags = 0x2
        try vcpu.setRegisters(regs)
        #expect(try vcpu.registers().rip == 0x1234)
        #expect(try !kvm.supportedCPUID().isEmpty)
    }

    @Test func runsThreeInstructionsOfRealModeCode() throws {
        // mov al, 0x42; out 0x80, al; hlt — in real mode at 0x1000.
        let kvm = try KVM()
        let vm = try kvm.createVM()
        let page = UnsafeMutableRawPointer.allocate(byteCount: 0x10000, alignment: 4096)
        defer { page.deallocate() }
        let code: [UInt8] = [0xB0, 0x42, 0xE6, 0x80, 0xF4]
        page.initializeMemory(as: UInt8.self, repeating: 0, count: 0x10000)
        for (i, b) in code.enumerated() { page.storeBytes(of: b, toByteOffset: 0x1000 + i, as: UInt8.self) }
        try vm.setUserMemoryRegion(slot: 0, guestAddress: 0, size: 0x10000, hostAddress: page)
        let vcpu = try vm.createVCPU(id: 0)
        var sregs = try vcpu.specialRegisters()
        sregs.cs.base = 0; sregs.cs.selector = 0
        try vcpu.setSpecialRegisters(sregs)
        var regs = kvm_regs()
        regs.rip = 0x1000; regs.rflags = 0x2
        try vcpu.setRegisters(regs)
        guard case .io(let port, let isWrite, let size, let count, let data) = try vcpu.run() else {
            Issue.record("expected a port I/O exit")
            return
        }
        #expect(port == 0x80 && isWrite && size == 1 && count == 1 && data[0] == 0x42)
    }

    @Test func errorsCarryTheOperationAndErrno() throws {
        let vm = try KVM().createVM()
        // Slot memory that is not page-aligned is refused by KVM.
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 4096)
        defer { buffer.deallocate() }
        #expect(throws: KVMError.self) {
            try vm.setUserMemoryRegion(slot: 0, guestAddress: 0x123, size: 4096, hostAddress: buffer)
        }
    }
}
