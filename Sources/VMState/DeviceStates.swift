import Devices
import Virtio

/// The emulated devices' state, as plain data. The state types that already
/// live next to their devices are reused, not copied: `Serial8250.State`
/// (Devices) and `VirtioTransportState` / `QueueState` (Virtio). The i8042 and
/// the ACPI sleep-control registers hold no state (they only act on writes), so
/// they have none here; the machine config in the manifest says they exist.
///
/// Take it after the devices are quiesced (no request in flight) and apply it
/// after the KVM state, so an interrupt a device raises while being restored is
/// not overwritten by the interrupt controllers' saved state.
public struct DeviceStates: Codable, Equatable, Sendable {
    /// 2 added `VirtioDeviceState.net` and the network card's control queue (a third queue).
    public static let version = 2
    /// At most this many virtio devices (far above the MMIO slots a machine has).
    public static let maxVirtioDevices = 64
    /// A virtio device has at most this many queues here (block 1, net 3; 2 before version 2).
    public static let maxQueues = 64

    public var formatVersion: Int = DeviceStates.version
    /// COM1, the 16550A at 0x3F8; nil for a machine without one.
    public var serial: Serial8250.State?
    /// The virtio-mmio devices, in MMIO slot order (the order the manifest lists them).
    public var virtio: [VirtioDeviceState]

    public init(serial: Serial8250.State?, virtio: [VirtioDeviceState]) {
        self.serial = serial
        self.virtio = virtio
    }

    /// Checks counts and identities; the devices re-validate the rest (queue
    /// addresses against guest memory) in their own `restoreState`.
    public func validate() throws {
        guard (1...DeviceStates.version).contains(formatVersion) else {
            throw DeviceStateError(message: "device state version \(formatVersion); this build reads 1...\(DeviceStates.version)")
        }
        if let serial, serial.receiveBuffer.count > Serial8250.receiveCapacity {
            throw DeviceStateError(message: "serial receive FIFO holds \(serial.receiveBuffer.count) bytes "
                + "(at most \(Serial8250.receiveCapacity))")
        }
        guard virtio.count <= DeviceStates.maxVirtioDevices else {
            throw DeviceStateError(message: "\(virtio.count) virtio devices (at most \(DeviceStates.maxVirtioDevices))")
        }
        var bases = Set<UInt64>()
        for (i, d) in virtio.enumerated() {
            guard bases.insert(d.mmioBase).inserted else {
                throw DeviceStateError(message: "virtio device \(i): MMIO base 0x\(String(d.mmioBase, radix: 16)) used twice")
            }
            try d.validate(slot: i)
        }
    }
}

/// One virtio-mmio device: where it sits, its transport (registers and queues)
/// and what identifies its backend to the guest.
public struct VirtioDeviceState: Codable, Equatable, Sendable {
    public enum Backend: Codable, Equatable, Sendable {
        /// The guest saw this capacity; a restore must open a disk of the same size.
        case block(capacitySectors: UInt64, readOnly: Bool)
        /// The MAC in the guest's config space; a restore must offer the same one.
        case net(mac: [UInt8])

        var deviceType: UInt32 {
            switch self {
            case .block: return VirtioDeviceType.block
            case .net: return VirtioDeviceType.net
            }
        }
    }

    /// A network card's state beyond its transport (version 2; nil in version 1
    /// and for disks).
    public struct NetState: Codable, Equatable, Sendable {
        /// VIRTIO_NET_S_ANNOUNCE was set and not yet acknowledged by the driver.
        public var announcePending: Bool
        /// The card offered CTRL_VQ and GUEST_ANNOUNCE; false for one first
        /// restored from a version-1 state, which keeps its old feature set.
        public var offersControlQueue: Bool

        public init(announcePending: Bool, offersControlQueue: Bool) {
            self.announcePending = announcePending
            self.offersControlQueue = offersControlQueue
        }
    }

    public var mmioBase: UInt64
    public var gsi: UInt32
    public var transport: VirtioTransportState
    public var backend: Backend
    public var net: NetState?

    public init(mmioBase: UInt64, gsi: UInt32, transport: VirtioTransportState, backend: Backend, net: NetState? = nil) {
        self.mmioBase = mmioBase
        self.gsi = gsi
        self.transport = transport
        self.backend = backend
        self.net = net
    }

    func validate(slot: Int) throws {
        func fail(_ m: String) -> DeviceStateError { DeviceStateError(message: "virtio device \(slot): \(m)") }
        guard mmioBase % 0x1000 == 0 else { throw fail("MMIO base 0x\(String(mmioBase, radix: 16)) is not page-aligned") }
        guard gsi < 1024 else { throw fail("GSI \(gsi) out of range") }
        guard transport.deviceType == backend.deviceType else {
            throw fail("transport says device type \(transport.deviceType), backend is type \(backend.deviceType)")
        }
        guard transport.queues.count <= DeviceStates.maxQueues else {
            throw fail("\(transport.queues.count) queues (at most \(DeviceStates.maxQueues))")
        }
        if case .net(let mac) = backend, mac.count != 6 { throw fail("MAC address has \(mac.count) bytes") }
        if net != nil, backend.deviceType != VirtioDeviceType.net { throw fail("network card state on a disk") }
    }
}

/// Why saved device state cannot be applied.
public struct DeviceStateError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { "invalid device state: \(message)" }
}
