import Devices
import Foundation
import GuestMemory
import KVM
import Virtio
import X86

/// A built VM: KVM objects, guest RAM, buses and devices, the event loop and the
/// vCPU threads. `run()` starts it and blocks until it powers off, reboots or
/// crashes.
public final class Machine: @unchecked Sendable {
    public let config: MachineConfig
    let kvm: KVM
    let vm: VirtualMachine
    public let memory: GuestMemory
    let pio = Bus()
    let mmio = Bus()
    let events: EventLoop
    let serial: Serial8250
    private(set) var virtio = VirtioDevices()
    private var vcpuThreads: [VCPUThread] = []
    private var keepAlive: [AnyObject] = []
    private var console: ConsoleInput?  // held for the VM's life, stopped at teardown

    private let lock = NSLock()
    private var exitReason: MachineExit?
    private let stopped = DispatchSemaphore(value: 0)

    /// Builds the whole VM from a validated config; nothing runs yet.
    public init(config: MachineConfig, output: @escaping (UInt8) -> Void = Machine.writeToStdout) throws {
        try config.validate()
        self.config = config
        kvm = try KVM()
        vm = try kvm.createVM()
        events = try EventLoop()

        // Intel VT-x needs these below 4 GiB, out of the way of RAM and devices;
        // other KVM back ends accept and ignore them.
        try? vm.setIdentityMapAddress(0xFFFB_C000)
        try? vm.setTSSAddress(0xFFFB_D000)
        try vm.createIRQChip()
        try vm.createPIT()

        memory = try GuestMemory(ranges: MemoryMap.ramRanges(size: config.memorySize).map { (GuestAddress($0.start), $0.size) })
        for (slot, region) in memory.regions.enumerated() {
            try vm.setUserMemoryRegion(slot: UInt32(slot), guestAddress: region.start.rawValue, size: region.size,
                                       hostAddress: region.hostAddress)
        }

        // Devices. Callbacks may run on vCPU threads; `stop` is thread-safe.
        let serialIRQ = try IRQFDLine(vm: vm, gsi: Layout.serialIRQ)
        keepAlive.append(serialIRQ)
        serial = Serial8250(interrupt: serialIRQ, output: output)
        try pio.insert(serial, at: UInt64(Layout.serialPort), length: 8)
        try pio.insert(I8042 { [unowned(unsafe) self] in self.stop(.rebooted) },
                       at: UInt64(Layout.i8042DataPort), length: 5)
        try pio.insert(ACPISleepControl(softOffType: Layout.sleepTypeS5, resetValue: Layout.acpiResetValue,
                                        onPowerOff: { [unowned(unsafe) self] in self.stop(.poweredOff) },
                                        onReset: { [unowned(unsafe) self] in self.stop(.rebooted) }),
                       at: UInt64(Layout.acpiSleepControlPort), length: ACPISleepControl.length)

        for disk in config.disks {
            try virtio.add(try VirtioBlock(config: disk), machine: vm, memory: memory, mmio: mmio, events: events)
        }
        for network in config.networks {
            try virtio.add(try VirtioNet(config: network), machine: vm, memory: memory, mmio: mmio, events: events)
        }

        // Firmware tables, then the kernel (which needs the RSDP address).
        try MPTable.write(cpuCount: config.cpuCount, to: memory)
        let rsdp = try ACPITables.write(ACPIConfiguration(cpuCount: config.cpuCount, virtioDevices: virtio.resources),
                                        to: memory)
        var bootConfig = config
        bootConfig.commandLine = ([config.commandLine] + virtio.commandLineArguments).joined(separator: " ")
        let boot = try KernelBoot.load(config: bootConfig, memory: memory, rsdp: rsdp)
        try boot.writeTables(to: memory)

        let supportedCPUID = try kvm.supportedCPUID()
        for id in 0..<config.cpuCount {
            let vcpu = try vm.createVCPU(id: id)
            try VCPUSetup.configure(vcpu, supportedCPUID: supportedCPUID, cpuCount: config.cpuCount)
            if id == 0 { try VCPUSetup.setBootRegisters(vcpu, boot) }
            vcpuThreads.append(VCPUThread(vcpu: vcpu, pio: pio, mmio: mmio,
                                          isStopping: { [unowned(unsafe) self] in self.isStopping },
                                          onExit: { [unowned(unsafe) self] in self.stop($0) }))
        }
    }

    /// Starts the event loop and the vCPUs; returns when the guest is gone.
    public func run(attachConsole: Bool = true) -> MachineExit {
        Terminal.installTerminationHandlers()
        if attachConsole {
            let raw = Terminal.enterRawMode()
            console = ConsoleInput(serial: serial, loop: events, escapeEnabled: raw) { [unowned(unsafe) self] in
                self.stop(.quitFromConsole)
            }
            console?.start()
        }
        VCPUThread.installKickHandler()
        events.start()
        for t in vcpuThreads { t.start() }

        stopped.wait()
        for t in vcpuThreads { t.kick() }
        for t in vcpuThreads { t.join() }
        events.stop()
        console?.stop()
        Terminal.restore()
        lock.lock(); defer { lock.unlock() }
        return exitReason ?? .crashed("stopped without a reason")
    }

    /// Ends the VM; the first reason wins. Safe from any thread.
    public func stop(_ reason: MachineExit) {
        lock.lock()
        let first = exitReason == nil
        if first { exitReason = reason }
        lock.unlock()
        if first { stopped.signal() }
    }

    var isStopping: Bool {
        lock.lock(); defer { lock.unlock() }
        return exitReason != nil
    }
}
