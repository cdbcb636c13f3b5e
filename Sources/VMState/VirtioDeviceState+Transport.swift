import Virtio

/// Taking a virtio device's state from its transport and putting it back, with
/// the backend checked: a restore must find the same kind of device, a disk of
/// the capacity the guest saw, the MAC the guest knows.
extension VirtioDeviceState {
    /// Reads the transport (registers, queues) and the device's identity. Call
    /// with the vCPUs paused and the device quiesced (no request in flight).
    /// - Parameters:
    ///   - mmioBase: where the machine placed the transport.
    ///   - gsi: the interrupt line it raises.
    public init(transport: VirtioMMIOTransport, mmioBase: UInt64, gsi: UInt32) throws {
        let net = transport.withDevice { device in
            (device as? VirtioNet).map { NetState(announcePending: $0.isAnnouncePending, offersControlQueue: $0.offersControlQueue) }
        }
        self.init(mmioBase: mmioBase, gsi: gsi, transport: transport.saveState(),
                  backend: try Self.backend(of: transport.device), net: net)
    }

    /// Checks that `transport` fronts the device this state was saved from, then
    /// restores the transport, which re-validates every queue against guest
    /// memory and re-activates the device if the driver had set DRIVER_OK.
    /// Call after the KVM state is restored.
    public func restore(into transport: VirtioMMIOTransport) throws {
        let current = try Self.backend(of: transport.device)
        switch (backend, current) {
        case let (.block(savedCapacity, savedReadOnly), .block(capacity, readOnly)):
            guard savedCapacity == capacity else {
                throw DeviceStateError(message: "the disk at 0x\(String(mmioBase, radix: 16)) had \(savedCapacity) sectors, "
                    + "the one opened now has \(capacity)")
            }
            guard savedReadOnly == readOnly else {
                throw DeviceStateError(message: "the disk at 0x\(String(mmioBase, radix: 16)) was "
                    + "\(savedReadOnly ? "read-only" : "writable"), now it is \(readOnly ? "read-only" : "writable")")
            }
        case let (.net(savedMAC), .net(mac)):
            guard savedMAC == mac else {
                throw DeviceStateError(message: "the network card at 0x\(String(mmioBase, radix: 16)) had MAC "
                    + "\(Self.format(savedMAC)), the new one has \(Self.format(mac))")
            }
        default:
            throw DeviceStateError(message: "the device at 0x\(String(mmioBase, radix: 16)) was of type "
                + "\(backend.deviceType), the new one is of type \(current.deviceType)")
        }
        var saved = self.transport
        if let card = transport.device as? VirtioNet {
            let offers = try Self.adaptNetQueues(&saved, card: card, net: net, at: mmioBase)
            transport.withDevice { _ in card.offersControlQueue = offers }
        }
        do {
            try transport.restoreState(saved)
        } catch {
            throw DeviceStateError(message: "virtio device at 0x\(String(mmioBase, radix: 16)): \(error)")
        }
        if let card = transport.device as? VirtioNet, let net {
            transport.withDevice { _ in card.restoreAnnounce(pending: net.announcePending) }
        }
    }

    /// A network card saved before the control queue existed (version 1: two
    /// queues, no `net`) gets an unused third queue and keeps offering the
    /// feature set its driver negotiated with. Returns whether the card offers
    /// the control queue.
    static func adaptNetQueues(_ saved: inout VirtioTransportState, card: VirtioNet, net: NetState?,
                               at mmioBase: UInt64) throws -> Bool {
        guard saved.queues.count == card.queueMaxSizes.count - 1 else { return net?.offersControlQueue ?? true }
        let negotiated = saved.driverFeatures & (VirtioNet.Feature.controlQueue | VirtioNet.Feature.guestAnnounce)
        guard net == nil, negotiated == 0 else {
            throw DeviceStateError(message: "the network card at 0x\(String(mmioBase, radix: 16)) has no control queue "
                + "but its driver negotiated one")
        }
        saved.queues.append(QueueState(maxSize: VirtioNet.controlQueueSize))
        return false
    }

    static func backend(of device: VirtioDevice) throws -> Backend {
        switch device {
        case let block as VirtioBlock:
            return .block(capacitySectors: block.capacity, readOnly: block.image.isReadOnly)
        case let net as VirtioNet:
            return .net(mac: net.mac.bytes)
        default:
            throw DeviceStateError(message: "no snapshot support for virtio device type \(device.deviceType)")
        }
    }

    static func format(_ mac: [UInt8]) -> String {
        mac.map { let h = String($0, radix: 16); return $0 < 16 ? "0" + h : h }.joined(separator: ":")
    }
}
