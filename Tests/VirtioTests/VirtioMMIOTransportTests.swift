import Devices
import Events
import Foundation
import GuestMemory
import Testing
@testable import Virtio

/// A device that records what the transport asks of it.
// Sound because: the transport calls it only with its device lock held; `_events` is also under `lock` for the test thread.
final class RecordingDevice: VirtioDevice, @unchecked Sendable {
    let deviceType: UInt32 = 42
    let deviceFeatures: UInt64 = 1 << 3
    let queueMaxSizes: [UInt16] = [16, 8]
    var config: [UInt8] = Array(0..<16)
    var failActivation = false
    private let lock = NSLock()
    private var _events: [String] = []
    var context: VirtioDeviceContext?
    var events: [String] { lock.lock(); defer { lock.unlock() }; return _events }
    private func record(_ e: String) { lock.lock(); _events.append(e); lock.unlock() }

    func readConfig(offset: Int, into data: UnsafeMutableRawBufferPointer) { Self.copyConfig(config, offset: offset, into: data) }
    func writeConfig(offset: Int, data: UnsafeRawBufferPointer) {
        for (i, b) in data.enumerated() where offset + i < config.count { config[offset + i] = b }
    }
    func acceptsFeatures(_ features: UInt64) -> Bool { true }
    func activate(_ context: VirtioDeviceContext) throws {
        if failActivation { throw HostCallError("test", errno: EIO) }
        self.context = context
        record("activate \(context.features)")
    }
    func queueNotified(_ index: Int) { record("notify \(index)") }
    func reset() { context = nil; record("reset") }
    func shutdown() throws { record("shutdown") }
    func quiesce() { record("quiesce") }
}

private let version1 = VirtioFeature.version1

@Suite struct VirtioMMIOTransportTests {
    let memory: GuestMemory
    let loop: RunningLoop
    let device = RecordingDevice()
    let irq = FakeInterruptLine()
    let transport: VirtioMMIOTransport
    let driver: FakeDriver

    init() throws {
        memory = try makeGuestMemory()
        loop = try RunningLoop()
        transport = try VirtioMMIOTransport(device: device, memory: memory, interrupt: irq, eventLoop: loop.loop)
        driver = FakeDriver(transport: transport)
    }

    @Test func identifiesItself() {
        #expect(driver.read32(0x000) == 0x7472_6976)
        #expect(driver.read32(0x004) == 2)
        #expect(driver.read32(0x008) == 42)
        #expect(driver.read32(0x0b0) == 0xffff_ffff) // no shared memory regions
        #expect(transport.queueNotifiers.map(\.queue) == [0, 1])
        #expect(Set(transport.queueNotifiers.map(\.eventFD)).count == 2)
    }

    @Test func describesItselfOnTheKernelCommandLine() {
        #expect(VirtioMMIOTransport.kernelCommandLineArgument(base: 0xd000_0000, irq: 5) == "virtio_mmio.device=4K@0xd0000000:5")
    }

    @Test func offersDeviceAndRingFeatures() {
        let f = driver.deviceFeatures
        #expect(f == (1 << 3) | version1 | VirtioFeature.ringIndirectDesc | VirtioFeature.ringEventIdx)
        driver.write32(0x14, 7)
        #expect(driver.read32(0x10) == 0)
    }

    @Test func featuresOKNeedsVersion1AndOfferedBits() {
        #expect(!driver.negotiate(1 << 3))               // legacy driver: refused
        #expect(!driver.negotiate(version1 | 1 << 4))    // a bit we did not offer
        #expect(driver.negotiate(version1 | 1 << 3))
        // Features are frozen after FEATURES_OK.
        driver.write32(0x24, 0); driver.write32(0x20, 0)
        driver.driverOK()
        #expect(device.events.filter { $0 != "reset" } == ["activate \(version1 | 1 << 3)"])
    }

    @Test func statusMachineRefusesSkippedSteps() {
        driver.write32(0x70, VirtioStatus.acknowledge | VirtioStatus.driverOK) // DRIVER_OK without FEATURES_OK
        #expect(driver.status == 0)
        driver.write32(0x70, VirtioStatus.driver)                            // DRIVER without ACKNOWLEDGE
        #expect(driver.status == 0)
        driver.write32(0x70, VirtioStatus.acknowledge)
        driver.write32(0x70, VirtioStatus.deviceNeedsReset | VirtioStatus.acknowledge) // driver cannot set it
        #expect(driver.status == VirtioStatus.acknowledge)
        driver.write32(0x70, VirtioStatus.driver)                            // clearing ACKNOWLEDGE: ignored
        #expect(driver.status == VirtioStatus.acknowledge)
        #expect(device.events.isEmpty)
    }

    @Test func queueSetUpAndValidation() throws {
        let guest = try FakeGuestQueue(memory: memory, size: 16, base: 0x10000)
        driver.write32(0x30, 0)
        #expect(driver.read32(0x34) == 16)
        driver.write32(0x30, 1)
        #expect(driver.read32(0x34) == 8)
        driver.write32(0x30, 2)
        #expect(driver.read32(0x34) == 0) // no such queue

        driver.setUpQueue(0, guest) // before FEATURES_OK: ignored
        #expect(driver.read32(0x44) == 0)
        #expect(driver.negotiate(version1))
        driver.setUpQueue(0, guest)
        #expect(driver.read32(0x44) == 1)
        #expect(driver.read32(0x80) == UInt32(guest.descriptorTable))
        driver.write32(0x80, 0x1234) // ring registers are frozen while ready
        #expect(driver.read32(0x80) == UInt32(guest.descriptorTable))

        // Queue 1 has max 8: size 16 is refused and the queue stays not ready.
        driver.setUpQueue(1, guest)
        #expect(driver.read32(0x44) == 0)
        #expect(transport.lastError?.contains("queue size 16") == true)
        // Going on to DRIVER_OK regardless: the device asks for a reset instead of starting.
        driver.driverOK()
        #expect(driver.status & VirtioStatus.deviceNeedsReset != 0)
        #expect(!device.events.contains { $0.hasPrefix("activate") })
    }

    @Test func notificationsRunOnTheEventLoop() throws {
        let guest = try FakeGuestQueue(memory: memory, size: 8, base: 0x10000)
        #expect(driver.negotiate(version1))
        driver.setUpQueue(1, guest)
        driver.driverOK()
        #expect(waitUntil { device.events.contains("notify 1") }) // the activation kick
        let before = device.events.filter { $0 == "notify 1" }.count
        driver.write32(0x50, 1) // plain MMIO QueueNotify
        #expect(waitUntil { device.events.filter { $0 == "notify 1" }.count == before + 1 })
        var one: UInt64 = 1 // as KVM's ioeventfd would
        _ = write(transport.queueNotifiers[1].eventFD, &one, 8)
        #expect(waitUntil { device.events.filter { $0 == "notify 1" }.count == before + 2 })
        driver.write32(0x50, 0) // queue 0 not ready: nothing
        driver.write32(0x50, 99) // no such queue: nothing
        usleep(20_000)
        #expect(!device.events.contains("notify 0"))
    }

    @Test func interruptsSetStatusBitsUntilAcknowledged() throws {
        let guest = try FakeGuestQueue(memory: memory, size: 8, base: 0x10000)
        #expect(driver.negotiate(version1))
        driver.setUpQueue(0, guest)
        driver.driverOK()
        let context = try #require(device.context)
        transport.lock.lock()
        context.signalUsed(queue: 0)
        transport.lock.unlock()
        #expect(irq.count == 1)
        #expect(driver.acknowledgeInterrupt() == 1)
        #expect(driver.read32(0x60) == 0)
        transport.lock.lock()
        context.configChanged()
        transport.lock.unlock()
        #expect(driver.read32(0x60) == 2)
        #expect(driver.read32(0xfc) == 1) // ConfigGeneration moved
    }

    @Test func failedActivationAsksForReset() {
        device.failActivation = true
        #expect(driver.negotiate(version1))
        driver.driverOK()
        #expect(driver.status & VirtioStatus.deviceNeedsReset != 0)
        #expect(driver.read32(0x60) == 2) // configuration change interrupt
        #expect(irq.count == 1)
        driver.write32(0x70, 0)
        #expect(driver.status == 0)
    }

    @Test func writingZeroResetsEverything() throws {
        let guest = try FakeGuestQueue(memory: memory, size: 8, base: 0x10000)
        #expect(driver.negotiate(version1))
        driver.setUpQueue(0, guest)
        driver.driverOK()
        driver.write32(0x70, 0)
        #expect(driver.status == 0)
        driver.write32(0x30, 0)
        #expect(driver.read32(0x44) == 0)
        #expect(driver.read32(0x80) == 0)
        #expect(device.events.contains("reset"))
        #expect(device.context?.isActive != true)
        // And it can be brought up again.
        #expect(driver.negotiate(version1))
        driver.setUpQueue(0, guest)
        driver.driverOK()
        #expect(device.events.filter { $0.hasPrefix("activate") }.count == 2)
    }

    @Test func configSpaceAnyWidth() {
        #expect(driver.readConfig(0, count: 1) == [0])
        #expect(driver.readConfig(2, count: 2) == [2, 3])
        #expect(driver.readConfig(4, count: 4) == [4, 5, 6, 7])
        #expect(driver.readConfig(8, count: 8) == Array(8..<16))
        #expect(driver.readConfig(14, count: 4) == [14, 15, 0, 0]) // past the end reads 0
        [UInt8](arrayLiteral: 0xee).withUnsafeBytes { transport.write(offset: 0x101, data: $0) }
        #expect(driver.readConfig(0, count: 2) == [0, 0xee])
        #expect(driver.read32(0xfc) == 0)
    }

    @Test func oddRegisterAccessesAreIgnored() {
        var two: UInt16 = 0xffff
        withUnsafeMutableBytes(of: &two) { transport.read(offset: 0, into: $0) }
        #expect(two == 0)
        withUnsafeBytes(of: UInt16(1)) { transport.write(offset: 0x70, data: $0) }
        #expect(driver.status == 0)
        #expect(driver.read32(0x02) == 0) // unaligned
    }
}
