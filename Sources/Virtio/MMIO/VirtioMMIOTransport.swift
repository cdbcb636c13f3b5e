import CKVM
import Devices
import Events
import GuestMemory
import Logging
import Posix
#if canImport(Glibc)
import Glibc
#endif

/// The virtio-mmio transport, version 2 register layout (virtio 1.2 §4.2.2), in
/// front of one `VirtioDevice`. Registered on the MMIO bus for `windowSize` bytes.
///
/// Threads: register accesses arrive on vCPU threads; queue work runs on the event
/// loop thread, woken by one eventfd per queue (`queueNotifiers`), which the VMM
/// registers with KVM_IOEVENTFD at `base + notifyOffset`, datamatch = queue index.
/// Both sides take `lock`, so device state never races.
// Sound because: every `var` (and the device behind it) is read and written with `lock` held, on vCPU and event-loop threads alike.
public final class VirtioMMIOTransport: BusDevice, @unchecked Sendable {
    /// Bytes of MMIO space per device: registers 0x000–0x0ff, config space from 0x100.
    public static let windowSize: UInt64 = 0x1000
    /// Offset of QueueNotify, where the VMM places each queue's ioeventfd.
    public static let notifyOffset: UInt64 = 0x50
    static let magic: UInt32 = 0x7472_6976 // "virt"
    static let vendorID: UInt32 = 0x4646_4B53 // "SKFF"
    static let interruptUsedBuffer: UInt32 = 1
    static let interruptConfigChange: UInt32 = 2
    /// Features the transport itself supports, on top of the device's.
    static let transportFeatures = VirtioFeature.version1 | VirtioFeature.ringIndirectDesc | VirtioFeature.ringEventIdx

    public let device: VirtioDevice
    public let memory: GuestMemory
    public let eventLoop: EventLoop
    let interrupt: InterruptLine
    let lock = ThreadLock()
    /// Guest misbehaviour (DEVICE_NEEDS_RESET) at warning.
    let log = Logger(label: "skiff.virtio")

    /// One eventfd per queue: a write (by KVM's ioeventfd or by a plain MMIO write
    /// to QueueNotify) wakes the event loop, which calls `device.queueNotified`.
    public var queueNotifiers: [(queue: Int, eventFD: Int32)] {
        notifierEvents.enumerated().map { ($0.offset, $0.element.fileDescriptor) }
    }
    private let notifierEvents: [EventFD]

    private let queues: [SplitQueue]
    private var status: UInt32 = 0
    private var deviceFeaturesSel: UInt32 = 0
    private var driverFeaturesSel: UInt32 = 0
    private var driverFeatures: UInt64 = 0
    private var queueSel: UInt32 = 0
    private var interruptStatus: UInt32 = 0
    private var configGeneration: UInt32 = 0
    private var context: VirtioDeviceContext?
    /// A QueueReady=1 that was refused since the last reset.
    private var queueSetupError: String?
    /// Why the device last set DEVICE_NEEDS_RESET (for logs and tests).
    public var lastError: String? {
        lock.lock(); defer { lock.unlock() }
        return errorReason
    }
    private var errorReason: String?

    public init(device: VirtioDevice, memory: GuestMemory, interrupt: InterruptLine, eventLoop: EventLoop) throws {
        self.device = device
        self.memory = memory
        self.interrupt = interrupt
        self.eventLoop = eventLoop
        queues = device.queueMaxSizes.map { SplitQueue(maxSize: $0, memory: memory) }
        notifierEvents = try queues.indices.map { try EventFD("virtio queue \($0) notifications") }
        for (index, event) in notifierEvents.enumerated() {
            try eventLoop.add(event.fileDescriptor) { [weak self] _ in self?.queueEventFired(index) }
        }
    }

    deinit {
        for event in notifierEvents { eventLoop.remove(event.fileDescriptor) }
    }

    /// The VM pauses: see `VirtioDevice.quiesce()`. On the event loop thread.
    public func quiesce() {
        lock.lock(); defer { lock.unlock() }
        device.quiesce()
    }

    /// Makes the device's completed writes durable, metadata included (a
    /// snapshot copies the disk next). Call with the VM paused.
    public func flushDevice() throws {
        lock.lock(); defer { lock.unlock() }
        if let block = device as? VirtioBlock { try block.flush() }
    }

    /// Runs `body` with the device lock held, so the event loop does no device
    /// work meanwhile (a migration reads a disk's clusters this way while the VM runs).
    public func withDeviceLocked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        return try body()
    }

    /// Ends the device for good (the VM is going away, the event loop has
    /// stopped): see `VirtioDevice.shutdown()`.
    public func shutdown() throws {
        lock.lock(); defer { lock.unlock() }
        try device.shutdown()
    }

    /// The kernel command-line word that describes a device at `base` with `irq`
    /// to Linux guests without ACPI, e.g. `virtio_mmio.device=4K@0xd0000000:5`.
    public static func kernelCommandLineArgument(base: UInt64, irq: UInt32) -> String {
        "virtio_mmio.device=\(windowSize / 1024)K@0x\(String(base, radix: 16)):\(irq)"
    }

    /// Offered features: the device's plus the transport's.
    public var offeredFeatures: UInt64 { device.deviceFeatures | Self.transportFeatures }

    // MARK: - BusDevice

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        lock.lock(); defer { lock.unlock() }
        if offset >= 0x100 {
            device.readConfig(offset: Int(offset - 0x100), into: data)
            return
        }
        // §4.2.2.2: control registers are 32-bit wide, aligned accesses only.
        guard data.count == 4, offset % 4 == 0 else {
            data.initializeMemory(as: UInt8.self, repeating: 0)
            return
        }
        data.storeBytes(of: register(at: offset).littleEndian, as: UInt32.self)
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        if offset >= 0x100 {
            lock.lock(); defer { lock.unlock() }
            device.writeConfig(offset: Int(offset - 0x100), data: data)
            return
        }
        guard data.count == 4, offset % 4 == 0 else { return }
        let value = UInt32(littleEndian: data.loadUnaligned(as: UInt32.self))
        if offset == Self.notifyOffset {
            notify(queue: value) // no lock: just an eventfd write
            return
        }
        lock.lock(); defer { lock.unlock() }
        setRegister(at: offset, value)
    }

    // MARK: - Registers

    private var selectedQueue: SplitQueue? {
        Int(queueSel) < queues.count ? queues[Int(queueSel)] : nil
    }

    private func register(at offset: UInt64) -> UInt32 {
        switch offset {
        case 0x000: return Self.magic
        case 0x004: return 2
        case 0x008: return device.deviceType
        case 0x00c: return Self.vendorID
        case 0x010:
            switch deviceFeaturesSel {
            case 0: return UInt32(truncatingIfNeeded: offeredFeatures)
            case 1: return UInt32(truncatingIfNeeded: offeredFeatures >> 32)
            default: return 0
            }
        case 0x034: return UInt32(selectedQueue?.state.maxSize ?? 0)
        case 0x038: return UInt32(selectedQueue?.size ?? 0)
        case 0x044: return selectedQueue?.isReady == true ? 1 : 0
        case 0x060: return interruptStatus
        case 0x070: return status
        case 0x080: return UInt32(truncatingIfNeeded: selectedQueue?.descriptorTable ?? 0)
        case 0x084: return UInt32(truncatingIfNeeded: (selectedQueue?.descriptorTable ?? 0) >> 32)
        case 0x090: return UInt32(truncatingIfNeeded: selectedQueue?.availRing ?? 0)
        case 0x094: return UInt32(truncatingIfNeeded: (selectedQueue?.availRing ?? 0) >> 32)
        case 0x0a0: return UInt32(truncatingIfNeeded: selectedQueue?.usedRing ?? 0)
        case 0x0a4: return UInt32(truncatingIfNeeded: (selectedQueue?.usedRing ?? 0) >> 32)
        // No shared memory regions: a length of -1 says the selected one does not exist.
        case 0x0b0, 0x0b4, 0x0b8, 0x0bc: return 0xffff_ffff
        case 0x0fc: return configGeneration
        default: return 0
        }
    }

    private func setRegister(at offset: UInt64, _ value: UInt32) {
        switch offset {
        case 0x014: deviceFeaturesSel = value
        case 0x020:
            // Features are negotiable only between DRIVER and FEATURES_OK (§3.1.1).
            guard status & VirtioStatus.driver != 0, status & VirtioStatus.featuresOK == 0 else { return }
            switch driverFeaturesSel {
            case 0: driverFeatures = (driverFeatures & 0xffff_ffff_0000_0000) | UInt64(value)
            case 1: driverFeatures = (driverFeatures & 0xffff_ffff) | UInt64(value) << 32
            default: break
            }
        case 0x024: driverFeaturesSel = value
        case 0x030: queueSel = value
        case 0x038, 0x044, 0x080, 0x084, 0x090, 0x094, 0x0a0, 0x0a4:
            setQueueRegister(at: offset, value)
        case 0x064: interruptStatus &= ~value
        case 0x070: setStatus(value)
        default: break // read-only or unsupported (QueueReset, SHMSel): ignored
        }
    }

    /// Queue set-up happens after FEATURES_OK and before DRIVER_OK (§3.1.1); the
    /// ring registers are only writable while the queue is not ready.
    private func setQueueRegister(at offset: UInt64, _ value: UInt32) {
        guard status & VirtioStatus.featuresOK != 0, status & VirtioStatus.driverOK == 0,
              let queue = selectedQueue else { return }
        if offset == 0x044 {
            if value == 0 { queue.isReady = false; return }
            queue.setFeatures(driverFeatures)
            do {
                try queue.validate()
                queue.isReady = true
            } catch {
                // The queue stays not ready (the driver can read that back); if the
                // driver goes on to DRIVER_OK anyway, the device asks for a reset.
                queueSetupError = "queue \(queueSel): \(error)"
                errorReason = queueSetupError
            }
            return
        }
        guard !queue.isReady else { return }
        func low(_ old: UInt64) -> UInt64 { (old & 0xffff_ffff_0000_0000) | UInt64(value) }
        func high(_ old: UInt64) -> UInt64 { (old & 0xffff_ffff) | UInt64(value) << 32 }
        switch offset {
        case 0x038: queue.size = UInt16(clamping: value) // too big is refused at QueueReady
        case 0x080: queue.descriptorTable = low(queue.descriptorTable)
        case 0x084: queue.descriptorTable = high(queue.descriptorTable)
        case 0x090: queue.availRing = low(queue.availRing)
        case 0x094: queue.availRing = high(queue.availRing)
        case 0x0a0: queue.usedRing = low(queue.usedRing)
        case 0x0a4: queue.usedRing = high(queue.usedRing)
        default: break
        }
    }

    /// The status state machine (§2.1, §3.1.1). The driver only ever adds bits, in
    /// order; writing 0 resets the device.
    private func setStatus(_ requested: UInt32) {
        if requested == 0 { reset(); return }
        // DEVICE_NEEDS_RESET belongs to the device; the driver cannot set or clear it.
        var new = (requested & ~VirtioStatus.deviceNeedsReset) | (status & VirtioStatus.deviceNeedsReset)
        guard new & status == status else { return } // clearing bits is not allowed
        let added = new & ~status
        if added & VirtioStatus.driver != 0, new & VirtioStatus.acknowledge == 0 { return }
        if added & VirtioStatus.featuresOK != 0 {
            // §2.2.2: refuse a feature set we did not offer, or without VERSION_1; the
            // driver sees FEATURES_OK clear when it reads the status back.
            let acceptable = new & VirtioStatus.driver != 0
                && driverFeatures & ~offeredFeatures == 0
                && driverFeatures & VirtioFeature.version1 != 0
                && device.acceptsFeatures(driverFeatures)
            if !acceptable { new &= ~VirtioStatus.featuresOK }
        }
        if added & VirtioStatus.driverOK != 0, new & VirtioStatus.featuresOK == 0 { return }
        status = new
        if added & VirtioStatus.driverOK != 0 { activate() }
    }

    private func activate() {
        if let queueSetupError {
            markNeedsReset("DRIVER_OK with a refused queue: \(queueSetupError)")
            return
        }
        for queue in queues where queue.isReady { queue.setFeatures(driverFeatures) }
        let context = VirtioDeviceContext(transport: self, memory: memory, queues: queues,
                                          features: driverFeatures, eventLoop: eventLoop)
        self.context = context
        do {
            try device.activate(context)
        } catch {
            markNeedsReset("activation failed: \(error)")
            return
        }
        // Handle buffers the driver posted before DRIVER_OK, on the loop thread.
        eventLoop.execute { [weak self] in
            guard let self else { return }
            self.lock.lock(); defer { self.lock.unlock() }
            guard let c = self.context, c === context, c.isActive, !self.needsReset else { return }
            for (index, queue) in self.queues.enumerated() where queue.isReady { self.device.queueNotified(index) }
        }
    }

    /// Device reset (§2.4): every register back to its initial value.
    private func reset() {
        context?.deactivate()
        context = nil
        device.reset()
        for queue in queues { queue.reset() }
        status = 0
        deviceFeaturesSel = 0
        driverFeaturesSel = 0
        driverFeatures = 0
        queueSel = 0
        interruptStatus = 0
        errorReason = nil
        queueSetupError = nil
    }

    /// Runs `body` with the device lock held: for device state outside the
    /// transport's registers (a network card's announce status), read or set
    /// while the device cannot be in a callback.
    public func withDevice<T>(_ body: (VirtioDevice) throws -> T) rethrows -> T {
        lock.lock(); defer { lock.unlock() }
        return try body(device)
    }

    // MARK: - Snapshot

    /// The registers and queue state. Take it with the vCPUs paused and the block
    /// device's requests completed (requests in flight are not part of the state).
    public func saveState() -> VirtioTransportState {
        lock.lock(); defer { lock.unlock() }
        return VirtioTransportState(deviceType: device.deviceType, status: status,
                                    deviceFeaturesSel: deviceFeaturesSel, driverFeaturesSel: driverFeaturesSel,
                                    driverFeatures: driverFeatures, queueSel: queueSel,
                                    interruptStatus: interruptStatus, configGeneration: configGeneration,
                                    queues: queues.map(\.state))
    }

    /// Rebuilds the transport from saved state (validating every queue against guest
    /// memory) and re-activates the device if the driver had set DRIVER_OK.
    public func restoreState(_ saved: VirtioTransportState) throws {
        lock.lock(); defer { lock.unlock() }
        guard saved.deviceType == device.deviceType else {
            throw VirtioStateError(message: "device type \(saved.deviceType), expected \(device.deviceType)")
        }
        guard saved.queues.count == queues.count else {
            throw VirtioStateError(message: "\(saved.queues.count) queues, expected \(queues.count)")
        }
        guard saved.driverFeatures & ~offeredFeatures == 0 else {
            throw VirtioStateError(message: "driver features 0x\(String(saved.driverFeatures, radix: 16)) were never offered")
        }
        let check = queues.map { SplitQueue(maxSize: $0.state.maxSize, memory: memory) }
        for (queue, state) in zip(check, saved.queues) { try queue.restore(state) }
        reset()
        for (queue, state) in zip(queues, saved.queues) { try queue.restore(state) }
        status = saved.status
        deviceFeaturesSel = saved.deviceFeaturesSel
        driverFeaturesSel = saved.driverFeaturesSel
        driverFeatures = saved.driverFeatures
        queueSel = saved.queueSel
        interruptStatus = saved.interruptStatus
        configGeneration = saved.configGeneration
        if status & VirtioStatus.driverOK != 0, !needsReset { activate() }
    }

    // MARK: - Notifications and interrupts

    /// Wakes the event loop for queue `index`, as KVM's ioeventfd would.
    private func notify(queue index: UInt32) {
        guard Int(index) < notifierEvents.count else { return }
        notifierEvents[Int(index)].signal()
    }

    private func queueEventFired(_ index: Int) {
        notifierEvents[index].consume()
        lock.lock(); defer { lock.unlock() }
        guard let context, context.isActive, !needsReset, queues[index].isReady else { return }
        device.queueNotified(index)
    }

    var needsReset: Bool { status & VirtioStatus.deviceNeedsReset != 0 }

    /// Called with the lock held.
    func raiseInterrupt(_ cause: UInt32) {
        interruptStatus |= cause
        interrupt.trigger()
    }

    /// Called with the lock held.
    func markNeedsReset(_ reason: String) {
        guard !needsReset else { return }
        errorReason = reason
        log.warning("virtio device \(device.deviceType) needs reset: \(reason)")
        status |= VirtioStatus.deviceNeedsReset
        if status & VirtioStatus.driverOK != 0 { raiseInterrupt(Self.interruptConfigChange) }
    }

    /// Called with the lock held (through the device's context).
    func configChanged() {
        configGeneration &+= 1
        if status & VirtioStatus.driverOK != 0 { raiseInterrupt(Self.interruptConfigChange) }
    }

    /// Reads `status` under the lock (for tests and the VMM's diagnostics).
    public var deviceStatus: UInt32 {
        lock.lock(); defer { lock.unlock() }
        return status
    }
}
