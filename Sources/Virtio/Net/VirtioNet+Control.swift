import GuestMemory

/// The control virtqueue (virtio 1.2 §5.1.6.5) and the guest-driven announce
/// (§5.1.6.5.3). A command is `{ u8 class; u8 command; data[]; u8 ack; }`: class,
/// command and data in device-readable buffers, the ack byte in the first
/// device-writable one. Only VIRTIO_NET_CTRL_ANNOUNCE / ANNOUNCE_ACK is
/// implemented (the only class whose feature is offered); every other command is
/// answered VIRTIO_NET_ERR, as is a malformed one whose ack byte can be written.
extension VirtioNet {
    public enum Control {
        public static let classAnnounce: UInt8 = 3
        public static let announceAck: UInt8 = 0
        public static let ok: UInt8 = 0
        public static let err: UInt8 = 1
    }

    /// What `requestAnnounce()` did.
    public enum AnnounceRequest: Equatable, Sendable {
        /// The status bit was set and a configuration-change interrupt sent.
        case requested
        /// The previous request is not acknowledged yet: nothing sent again.
        case stillPending
        /// The driver did not negotiate GUEST_ANNOUNCE (or is not running, or the
        /// device is broken): the VMM's own RARP frames are all there is.
        case notNegotiated
    }

    /// Asks the driver to announce itself (after a migration): VIRTIO_NET_S_ANNOUNCE
    /// plus a configuration-change interrupt. Call with the transport's lock held
    /// (`VirtioMMIOTransport.withDevice`). An interrupt raised while the vCPUs are
    /// paused is delivered when they run.
    public func requestAnnounce() -> AnnounceRequest {
        guard let context, context.isActive, !context.isBroken,
              context.hasFeature(Feature.guestAnnounce | Feature.controlQueue),
              context.queues[Self.controlQueue].isReady
        else { return .notNegotiated }
        guard !isAnnouncePending else { return .stillPending }
        isAnnouncePending = true
        announceRequests += 1
        context.configChanged()
        return .requested
    }

    /// Puts a saved VIRTIO_NET_S_ANNOUNCE back (restore): no interrupt, the
    /// transport's saved InterruptStatus says whether one is still pending.
    public func restoreAnnounce(pending: Bool) {
        isAnnouncePending = pending
    }

    func processControlQueue() {
        guard let context, !context.isBroken, context.queues[Self.controlQueue].isReady else { return }
        let queue = context.queues[Self.controlQueue]
        var answered = false
        do {
            repeat {
                try queue.disableNotification()
                while let chain = try queue.popAvailable() {
                    try answer(chain, memory: context.memory)
                    try queue.addUsed(head: chain.head, length: 1)
                    answered = true
                }
            } while try queue.enableNotification()
        } catch {
            context.deviceNeedsReset("virtio-net control queue: \(error)")
        }
        if answered { context.signalUsed(queue: Self.controlQueue) }
    }

    /// Executes one command and writes its ack byte. Throws only when there is
    /// no writable byte in guest RAM to answer in: the chain cannot be completed
    /// meaningfully, so the device asks for a reset.
    private func answer(_ chain: DescriptorChain, memory: GuestMemory) throws {
        // The ack goes to the first device-writable buffer; a chain whose buffers
        // are faulty may still have that one intact (it is checked again by the write).
        guard let ackBuffer = chain.buffers.first(where: \.isWritable) else {
            throw VirtqueueError.noStatusBuffer
        }
        var ack = Control.err
        let readable = chain.readable
        if chain.fault == nil, readable.totalLength >= 2, let header = try? readable.read(from: memory, count: 2) {
            ack = execute(class: header[0], command: header[1], dataLength: readable.totalLength - 2)
        }
        if ack != Control.ok { controlErrors += 1 }
        do {
            try memory.write([ack], to: ackBuffer.address)
        } catch let error as GuestMemoryError {
            throw VirtqueueError.memory(error)
        }
    }

    private func execute(class cls: UInt8, command: UInt8, dataLength: UInt64) -> UInt8 {
        switch (cls, command) {
        case (Control.classAnnounce, Control.announceAck) where dataLength == 0:
            // §5.1.6.5.3.1: the device clears the bit on ANNOUNCE_ACK. An ack with
            // nothing pending is answered OK too: clearing a clear bit is harmless.
            if isAnnouncePending { announceAcks += 1 }
            isAnnouncePending = false
            return Control.ok
        default:
            return Control.err
        }
    }
}
