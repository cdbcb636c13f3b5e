import Foundation
import Synchronization
import GuestMemory
import Network
import Testing
@testable import Virtio

/// Where a system tool lives, without trusting PATH (CI may not have /usr/sbin in it).
private func tool(_ name: String) -> String? {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

let canUseTaps = getuid() == 0 && FileManager.default.fileExists(atPath: "/dev/net/tun")
    && tool("ip") != nil && tool("sysctl") != nil && tool("cat") != nil

/// Runs a command (the first word is a tool name), returning its output; throws when it fails.
@discardableResult
private func run(_ arguments: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool(arguments[0]) ?? arguments[0])
    p.arguments = Array(arguments.dropFirst())
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard p.terminationStatus == 0 else { throw OptionError("\(arguments.joined(separator: " ")): \(text)") }
    return text
}

let guestMAC = try! MACAddress(parsing: "52:54:00:12:34:56")
private let hostIP: [UInt8] = [10, 77, 0, 1]

/// A virtio-net device on a real TAP that lives in a network namespace of its own
/// (10.77.0.1/24 on the host side, IPv6 off so the kernel sends nothing unasked).
final class NetHarness {
    /// Numbers the namespaces and TAPs of harnesses that tests build in parallel.
    static let counter = Atomic<Int>(0)
    static let rxBase: UInt64 = 0x10000, txBase: UInt64 = 0x20000
    static let rxData: UInt64 = 0x100000, txData: UInt64 = 0x200000
    static let ctrlBase: UInt64 = 0x30000, ctrlData: UInt64 = 0x300000

    let namespace: String
    let tapName: String
    let memory: GuestMemory
    let loop: RunningLoop
    let irq = FakeInterruptLine()
    let device: VirtioNet
    let transport: VirtioMMIOTransport
    let driver: FakeDriver
    let rx: FakeGuestQueue
    let tx: FakeGuestQueue
    let ctrl: FakeGuestQueue
    let features: UInt64
    private var txSlot: UInt64 = 0

    init(features: UInt64) throws {
        self.features = features
        let number = Self.counter.add(1, ordering: .relaxed).newValue
        namespace = "skiff-vt-\(getpid())-\(number)"
        tapName = "skvt\(getpid() % 10_000)x\(number)"
        try run(["ip", "netns", "add", namespace])
        do {
            try run(["ip", "netns", "exec", namespace, tool("sysctl")!, "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            device = try VirtioNet(config: NetDeviceConfig(tap: tapName, mac: guestMAC), queueSize: 16)
            // The open descriptor keeps working after the interface moves namespace.
            try run(["ip", "link", "set", tapName, "netns", namespace])
            try run(["ip", "-n", namespace, "addr", "add", "10.77.0.1/24", "dev", tapName])
            try run(["ip", "-n", namespace, "link", "set", tapName, "up"])
        } catch {
            _ = try? run(["ip", "netns", "del", namespace])
            throw error
        }
        memory = try makeGuestMemory()
        loop = try RunningLoop()
        transport = try VirtioMMIOTransport(device: device, memory: memory, interrupt: irq, eventLoop: loop.loop)
        driver = FakeDriver(transport: transport)
        rx = try FakeGuestQueue(memory: memory, size: 16, base: Self.rxBase)
        tx = try FakeGuestQueue(memory: memory, size: 16, base: Self.txBase)
        ctrl = try FakeGuestQueue(memory: memory, size: 16, base: Self.ctrlBase)
        guard driver.negotiate(features) else { throw OptionError("FEATURES_OK refused") }
        driver.setUpQueue(0, rx)
        driver.setUpQueue(1, tx)
        if features & VirtioNet.Feature.controlQueue != 0 { driver.setUpQueue(2, ctrl) }
        driver.driverOK()
    }

    deinit {
        driver.write32(0x70, 0) // stop the device before its TAP goes away
        _ = try? run(["ip", "netns", "del", namespace])
    }

    /// The host side's counter for this TAP (`rx_packets`: frames the guest sent).
    func hostCounter(_ name: String) throws -> Int {
        Int(try run(["ip", "netns", "exec", namespace, tool("cat")!, "/sys/class/net/\(tapName)/statistics/\(name)"])
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// Posts `count` receive buffers of `size` bytes and notifies the receive queue
    /// only when the device asked for it, as a real driver does (§2.7.10, §2.7.7).
    func postReceiveBuffers(_ count: Int, size: UInt32) throws {
        let old = rx.availIdx
        for _ in 0..<count {
            try rx.post([(Self.rxData + UInt64(rx.availIdx % 16) * 0x1000, size, true)])
        }
        let new = rx.availIdx
        let wanted = features & VirtioFeature.ringEventIdx != 0
            ? new &- rx.availEvent &- 1 < new &- old
            : rx.usedFlags & 1 == 0
        if wanted { driver.write32(0x50, 0) }
    }

    /// Sends an ARP request for the host's address from `senderIP`, as one TX chain
    /// split into header and frame descriptors.
    func sendARPRequest(from senderIP: [UInt8]) throws {
        var frame = [UInt8](repeating: 0xff, count: 6) + guestMAC.bytes + [0x08, 0x06]
        frame += [0, 1, 8, 0, 6, 4, 0, 1] + guestMAC.bytes + senderIP + [UInt8](repeating: 0, count: 6) + hostIP
        let at = Self.txData + (txSlot % 8) * 0x1000
        txSlot += 1
        try memory.write([UInt8](repeating: 0, count: 12), to: GuestAddress(at))
        try memory.write(frame, to: GuestAddress(at + 0x100))
        try tx.post([(at, 12, false), (at + 0x100, UInt32(frame.count), false)])
        driver.write32(0x50, 1)
    }

    /// Receive-queue entries the device returned since the last call: (head, length).
    func takeReceived() throws -> [(head: UInt32, length: UInt32)] { try rx.takeUsed() }

    /// The bytes the device wrote in receive buffer `head` (the fake queue's layout).
    func receivedBytes(_ element: (head: UInt32, length: UInt32)) throws -> [UInt8] { try rx.firstBufferBytes(element) }

    func onLoop<T>(_ body: () -> T) -> T {
        transport.lock.lock(); defer { transport.lock.unlock() }
        return body()
    }
}

/// Is `bytes` (vnet header + frame) an ARP reply from the host to the guest?
private func isARPReply(_ bytes: [UInt8]) -> Bool {
    let f = Array(bytes.dropFirst(12))
    return f.count >= 42 && Array(f[0..<6]) == guestMAC.bytes && f[12] == 0x08 && f[13] == 0x06
        && f[20] == 0 && f[21] == 2 && Array(f[28..<32]) == hostIP
}

private let offloads = VirtioNet.Feature.csum | VirtioNet.Feature.guestCsum | VirtioNet.Feature.guestTSO4
    | VirtioNet.Feature.guestTSO6 | VirtioNet.Feature.guestECN | VirtioNet.Feature.hostTSO4 | VirtioNet.Feature.hostTSO6

@Suite(.serialized, .enabled(if: canUseTaps, "needs root, /dev/net/tun and ip(8) to make a TAP in a network namespace"))
struct VirtioNetTests {
    @Test func exchangesFramesWithTheHost() throws {
        let h = try NetHarness(features: VirtioFeature.version1 | VirtioNet.Feature.mac | VirtioNet.Feature.status | offloads)
        #expect(h.driver.read32(0x08) == 1)
        #expect(h.driver.readConfig(0, count: 8) == guestMAC.bytes + [1, 0]) // MAC, LINK_UP
        try h.postReceiveBuffers(4, size: 2048)
        try h.sendARPRequest(from: [10, 77, 0, 2])
        #expect(waitUntil { h.tx.usedIdx == 1 })
        #expect(waitUntil { (try? h.hostCounter("rx_packets")) == 1 })     // the host saw our frame
        #expect(waitUntil { h.rx.usedIdx >= 1 })                             // and its reply reached the guest
        let received = try h.takeReceived()
        #expect(try received.contains { isARPReply(try h.receivedBytes($0)) })
        let first = try h.receivedBytes(received[0])
        #expect(first[10] == 1 && first[11] == 0) // num_buffers = 1
        #expect(h.irq.count >= 2)
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
    }

    @Test func holdsFramesWhileTheGuestHasNoBuffers() throws {
        let h = try NetHarness(features: VirtioFeature.version1 | VirtioFeature.ringEventIdx | VirtioNet.Feature.mac)
        // Three requests, three replies: all wait in the TAP while the receive queue is empty.
        for last: UInt8 in 2...4 { try h.sendARPRequest(from: [10, 77, 0, last]) }
        #expect(waitUntil { (try? h.hostCounter("rx_packets")) == 3 })
        #expect(waitUntil { h.onLoop { h.device.isReceivePaused } })
        usleep(100_000) // let the host's replies reach the TAP
        // The TAP counts a frame as sent when we read it: with no buffers none was read.
        #expect(try h.hostCounter("tx_packets") == 0)
        #expect(h.rx.usedIdx == 0)
        #expect(h.onLoop { h.device.rxDropped } == 0)

        try h.postReceiveBuffers(4, size: 2048)
        #expect(waitUntil { h.rx.usedIdx == 3 })
        let received = try h.takeReceived()
        #expect(try received.allSatisfy { isARPReply(try h.receivedBytes($0)) })
        #expect(h.onLoop { !h.device.isReceivePaused && h.device.rxFrames == 3 && h.device.rxDropped == 0 })
        #expect(try h.hostCounter("tx_packets") == 3)
    }

    @Test func mergesSmallReceiveBuffers() throws {
        let h = try NetHarness(features: VirtioFeature.version1 | VirtioNet.Feature.mergeableRxBuffers)
        try h.postReceiveBuffers(8, size: 32)
        try h.sendARPRequest(from: [10, 77, 0, 2])
        #expect(waitUntil { h.rx.usedIdx >= 2 })
        let received = try h.takeReceived()
        let bytes = try received.prefix(2).flatMap { try h.receivedBytes($0) }
        #expect(received[0].length == 32 && received[1].length == 22) // 12-byte header + 42-byte ARP reply
        #expect(bytes[10] == 2 && bytes[11] == 0)                      // num_buffers = 2
        #expect(isARPReply(bytes))
    }

    @Test func waitsForEnoughMergeableBuffersOneAtATime() throws {
        // With EVENT_IDX the driver only notifies when it passes avail_event: the device
        // must move it on each time it is still short, or it would wait forever.
        let h = try NetHarness(features: VirtioFeature.version1 | VirtioFeature.ringEventIdx | VirtioNet.Feature.mergeableRxBuffers)
        try h.postReceiveBuffers(1, size: 20)
        try h.sendARPRequest(from: [10, 77, 0, 2])
        #expect(waitUntil { h.onLoop { h.device.isReceivePaused } }, "rx \(h.onLoop { h.device.rxFrames }) dropped \(h.onLoop { h.device.rxDropped }) tx \(h.onLoop { h.device.txFrames }) used \(h.rx.usedIdx) status \(h.driver.status) \(h.transport.lastError ?? "")")
        try h.postReceiveBuffers(1, size: 20)
        usleep(20_000)
        #expect(h.rx.usedIdx == 0) // 40 bytes: still short of 54
        try h.postReceiveBuffers(1, size: 20)
        #expect(waitUntil { h.rx.usedIdx == 3 })
        let bytes = try h.takeReceived().flatMap { try h.receivedBytes($0) }
        #expect(bytes[10] == 3 && isARPReply(bytes))
    }

    @Test func dropsAFrameTheWholeRingCannotHold() throws {
        let h = try NetHarness(features: VirtioFeature.version1 | VirtioNet.Feature.mergeableRxBuffers)
        try h.postReceiveBuffers(16, size: 2) // 32 bytes in all: less than one ARP reply
        try h.sendARPRequest(from: [10, 77, 0, 2])
        #expect(waitUntil { h.onLoop { h.device.rxDropped } == 1 })
        #expect(h.rx.usedIdx == 0)
        #expect(h.onLoop { !h.device.isReceivePaused })
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
    }

    @Test func survivesHostileChains() throws {
        let h = try NetHarness(features: VirtioFeature.version1)
        // TX: a frame outside guest RAM, one shorter than the header: dropped, buffers returned.
        try h.tx.post([(0x4000_0000, 64, false)])
        try h.tx.post([(0x200000, 4, false)])
        h.driver.write32(0x50, 1)
        #expect(waitUntil { h.tx.usedIdx == 2 })
        #expect(h.onLoop { h.device.txDropped } == 2)
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
        // RX: a receive chain outside guest RAM cannot be answered: the device asks for a reset.
        try h.rx.post([(0x4000_0000, 2048, true)])
        h.driver.write32(0x50, 0)
        try h.sendARPRequest(from: [10, 77, 0, 2])
        #expect(waitUntil { h.driver.status & VirtioStatus.deviceNeedsReset != 0 })
        #expect(h.rx.usedIdx == 0)
    }
}

@Suite struct NetDeviceConfigTests {
    @Test func parsesTheCLISyntax() throws {
        #expect(try NetDeviceConfig(parsing: "tap=skiff0") == NetDeviceConfig(tap: "skiff0"))
        #expect(try NetDeviceConfig(parsing: "tap=tap1,mac=52:54:00:00:00:07")
                == NetDeviceConfig(tap: "tap1", mac: try MACAddress(parsing: "52:54:00:00:00:07")))
    }

    @Test(arguments: [
        ("mac=52:54:00:00:00:07", "missing tap=NAME"),
        ("tap=", "tap name is empty"),
        ("tap=t,mac=52:54:00", "invalid MAC address '52:54:00': expected six hex bytes like 52:54:00:12:34:56"),
        ("tap=t,mac=ff:ff:ff:ff:ff:ff", "MAC address 'ff:ff:ff:ff:ff:ff' is a multicast address (lowest bit of the first byte set)"),
        ("tap=t,vhost=on", "unknown key 'vhost' (known: tap, mac)"),
        ("skiff0", "'skiff0' is not key=value (expected tap=NAME[,mac=MAC])"),
    ])
    func rejectsBadOptions(text: String, message: String) {
        #expect(throws: OptionError(message)) { try NetDeviceConfig(parsing: text) }
    }
}
