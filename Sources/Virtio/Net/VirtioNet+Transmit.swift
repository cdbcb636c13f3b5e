import GuestMemory
import Network

/// Transmit (guest → TAP): on a notification every available chain is sent, one
/// `writev` per frame straight from the guest's buffers (iovecs over guest RAM,
/// no copy; `write` for a frame in one buffer, see `Tap.write`), until the ring
/// stays empty after notifications are re-enabled. used.idx is published every
/// `publishEvery` frames and at the end, and the interrupt (if the driver wants
/// one) sent once.
extension VirtioNet {
    func transmit() {
        guard let context, !context.isBroken, context.queues[Self.txQueue].isReady else { return }
        let queue = context.queues[Self.txQueue]
        var sent = 0
        do {
            repeat {
                // With EVENT_IDX this leaves avail_event behind: the driver does not notify while we drain.
                try queue.disableNotification()
                while let chain = try queue.popAvailable() {
                    send(chain, memory: context.memory)
                    try queue.addUsed(head: chain.head, length: 0, publish: false)
                    sent += 1
                    if sent % Self.publishEvery == 0 { try queue.publishUsed() }
                }
            } while try queue.enableNotification()
            try queue.publishUsed()
        } catch {
            try? queue.publishUsed()
            context.deviceNeedsReset("virtio-net transmit: \(error)")
        }
        if sent > 0 { context.signalUsed(queue: Self.txQueue) }
    }

    /// Writes one frame (vnet header + packet, gathered from the readable buffers).
    /// A malformed chain or a TAP error drops the frame: the guest only learns that
    /// the buffer is free again, as with a real NIC.
    private func send(_ chain: DescriptorChain, memory: GuestMemory) {
        guard chain.fault == nil else { txDropped += 1; return }
        var count = 0
        var total: UInt64 = 0
        for b in chain.buffers where !b.isWritable {
            total += UInt64(b.length)
            guard total <= UInt64(Self.maxFrame),
                  (try? appendIovecs(b, memory: memory, count: &count)) == true
            else { txDropped += 1; return }
        }
        guard total > UInt64(Tap.vnetHeaderSize) else { txDropped += 1; return }
        do {
            // SAFETY: checked views of guest RAM, used synchronously by writev.
            try tap.write(iovecs, count: count)
            txFrames += 1
        } catch {
            txDropped += 1
        }
    }
}
