import Devices
import Events
import Foundation
import GuestMemory
import Synchronization
@testable import Virtio

/// Counts interrupts instead of injecting them.
final class FakeInterruptLine: InterruptLine {
    private let triggered = Atomic<Int>(0)
    var count: Int { triggered.load(ordering: .relaxed) }
    func trigger() { triggered.add(1, ordering: .relaxed) }
}

/// Plays the guest driver against a transport through 32-bit register accesses,
/// in the order Linux's virtio_mmio driver uses.
struct FakeDriver {
    let transport: VirtioMMIOTransport

    func read32(_ offset: UInt64) -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { transport.read(offset: offset, into: $0) }
        return UInt32(littleEndian: value)
    }

    func write32(_ offset: UInt64, _ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { transport.write(offset: offset, data: $0) }
    }

    func readConfig(_ offset: Int, count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0xaa, count: count)
        bytes.withUnsafeMutableBytes { transport.read(offset: 0x100 + UInt64(offset), into: $0) }
        return bytes
    }

    var status: UInt32 { read32(0x70) }

    var deviceFeatures: UInt64 {
        write32(0x14, 0)
        let low = UInt64(read32(0x10))
        write32(0x14, 1)
        return low | UInt64(read32(0x10)) << 32
    }

    /// ACKNOWLEDGE, DRIVER, features, FEATURES_OK. Returns whether FEATURES_OK stuck.
    @discardableResult
    func negotiate(_ features: UInt64) -> Bool {
        write32(0x70, 0)
        write32(0x70, VirtioStatus.acknowledge)
        write32(0x70, VirtioStatus.acknowledge | VirtioStatus.driver)
        write32(0x24, 0); write32(0x20, UInt32(truncatingIfNeeded: features))
        write32(0x24, 1); write32(0x20, UInt32(truncatingIfNeeded: features >> 32))
        write32(0x70, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)
        return status & VirtioStatus.featuresOK != 0
    }

    func setUpQueue(_ index: UInt32, _ guest: FakeGuestQueue) {
        write32(0x30, index)
        write32(0x38, UInt32(guest.size))
        write32(0x80, UInt32(truncatingIfNeeded: guest.descriptorTable)); write32(0x84, UInt32(guest.descriptorTable >> 32))
        write32(0x90, UInt32(truncatingIfNeeded: guest.availRing)); write32(0x94, UInt32(guest.availRing >> 32))
        write32(0xa0, UInt32(truncatingIfNeeded: guest.usedRing)); write32(0xa4, UInt32(guest.usedRing >> 32))
        write32(0x44, 1)
    }

    func driverOK() {
        write32(0x70, status | VirtioStatus.driverOK)
    }

    /// The guest's interrupt handler: read and acknowledge InterruptStatus.
    @discardableResult
    func acknowledgeInterrupt() -> UInt32 {
        let s = read32(0x60)
        write32(0x64, s)
        return s
    }
}

/// Polls `condition` until it holds or `timeout` passes (device work is on the event loop thread).
func waitUntil(timeout: TimeInterval = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(1_000)
    }
    return condition()
}

/// An event loop running on its own thread for one test.
final class RunningLoop {
    let loop: EventLoop
    init() throws {
        loop = try EventLoop()
        try loop.start(name: "test-events")
    }
    deinit {
        loop.stop()
        loop.join()
    }
}

/// Guest RAM for device tests: 4 MiB at 0.
func makeGuestMemory(_ size: UInt64 = 4 << 20) throws -> GuestMemory {
    try GuestMemory(ranges: [(GuestAddress(0), size)])
}
