import GuestMemory
import Network
import Posix
#if canImport(Glibc)
import Glibc
#endif

/// Transmit (guest → TAP): on a notification every available chain is sent
/// straight from the guest's buffers (iovecs over guest RAM, no copy), until the
/// ring stays empty after notifications are re-enabled. With `txRing` (the usual
/// case) up to `TapWriteRing.capacity` frames go to the kernel in one system call
/// and are waited for before their chains are returned; without it, one `writev`
/// per frame (`write` for a frame in one buffer, see `Tap.write`). used.idx is
/// published every `publishEvery` frames and at the end, and the interrupt (if the
/// driver wants one) sent once.
extension VirtioNet {
    /// A chain popped for transmit whose frame waits in the batch: where its iovecs
    /// start in `iovecs` and how many (0: malformed, dropped without a write).
    struct PendingFrame {
        var head: UInt16
        var firstIovec: Int
        var iovecCount: Int
        /// Its write's result was reaped.
        var done = false
    }

    func transmit() {
        guard let context, !context.isBroken, context.queues[Self.txQueue].isReady else { return }
        let queue = context.queues[Self.txQueue]
        var sent = 0
        do {
            repeat {
                // With EVENT_IDX this leaves avail_event behind: the driver does not notify while we drain.
                try queue.disableNotification()
                while let chain = try queue.popAvailable() {
                    if txRing != nil {
                        try batch(chain, memory: context.memory, queue: queue, sent: &sent)
                    } else {
                        send(chain, memory: context.memory)
                        try returnChain(chain.head, queue: queue, sent: &sent)
                    }
                }
                try flushBatch(queue: queue, sent: &sent)
            } while try queue.enableNotification()
            try queue.publishUsed()
        } catch {
            try? flushBatch(queue: queue, sent: &sent)
            try? queue.publishUsed()
            context.deviceNeedsReset("virtio-net transmit: \(error)")
        }
        if sent > 0 { context.signalUsed(queue: Self.txQueue) }
    }

    private func returnChain(_ head: UInt16, queue: SplitQueue, sent: inout Int) throws {
        try queue.addUsed(head: head, length: 0, publish: false)
        sent += 1
        if sent % Self.publishEvery == 0 { try queue.publishUsed() }
    }

    /// Adds a frame to the batch (its iovecs after the batch's), writing the batch
    /// first when it is full or the iovecs do not fit after it.
    private func batch(_ chain: DescriptorChain, memory: GuestMemory, queue: SplitQueue, sent: inout Int) throws {
        if txPending.count == TapWriteRing.capacity { try flushBatch(queue: queue, sent: &sent) }
        var start = txPending.last.map { $0.firstIovec + $0.iovecCount } ?? 0
        var count = frameIovecs(chain, memory: memory, from: start)
        if count == nil && start > 0 {
            // Perhaps only out of room behind the others: write them, then try alone.
            try flushBatch(queue: queue, sent: &sent)
            start = 0
            count = frameIovecs(chain, memory: memory, from: 0)
        }
        guard let count, let ring = txRing,
              ring.queue(iovecs + start, count: count, tag: UInt64(txPending.count))
        else {
            txDropped += 1
            txPending.append(PendingFrame(head: chain.head, firstIovec: start, iovecCount: 0))
            return
        }
        txPending.append(PendingFrame(head: chain.head, firstIovec: start, iovecCount: count))
    }

    /// Writes the batch, counts what went out, returns its chains in order.
    func flushBatch(queue: SplitQueue, sent: inout Int) throws {
        guard !txPending.isEmpty else { return }
        defer { txPending.removeAll(keepingCapacity: true) }
        if txPending.contains(where: { $0.iovecCount > 0 }), let ring = txRing {
            var failure: Error?
            do { try ring.submitAndWait() } catch { failure = error }
            while let (tag, result) = ring.reap() {
                guard tag < UInt64(txPending.count) else { continue }
                txPending[Int(tag)].done = true
                if result >= 0 { txFrames += 1 } else { txDropped += 1 }
            }
            if let failure {
                // The kernel took none of the rest, or cannot tell us: write them one by one,
                // from now on without the ring (one it had taken may go out twice).
                StandardError.write("skiff: virtio-net \(tap.name): batched writes failed (\(failure)); writing frames one by one\n")
                txRing = nil
                for frame in txPending where frame.iovecCount > 0 && !frame.done {
                    writeOne(iovecs + frame.firstIovec, count: frame.iovecCount)
                }
            }
        }
        for frame in txPending { try returnChain(frame.head, queue: queue, sent: &sent) }
    }

    /// Builds a frame's iovecs (vnet header + packet, gathered from the readable
    /// buffers) in `iovecs` from index `start`; nil for a malformed chain or when they
    /// do not fit.
    private func frameIovecs(_ chain: DescriptorChain, memory: GuestMemory, from start: Int) -> Int? {
        guard chain.fault == nil else { return nil }
        var count = start
        var total: UInt64 = 0
        for b in chain.buffers where !b.isWritable {
            total += UInt64(b.length)
            guard total <= UInt64(Self.maxFrame),
                  (try? appendIovecs(b, memory: memory, count: &count)) == true
            else { return nil }
        }
        guard total > UInt64(Tap.vnetHeaderSize) else { return nil }
        return count - start
    }

    /// Writes one frame. A malformed chain or a TAP error drops the frame: the guest
    /// only learns that the buffer is free again, as with a real NIC.
    private func send(_ chain: DescriptorChain, memory: GuestMemory) {
        guard let count = frameIovecs(chain, memory: memory, from: 0) else { txDropped += 1; return }
        writeOne(iovecs, count: count)
    }

    private func writeOne(_ frame: UnsafeMutablePointer<iovec>, count: Int) {
        do {
            // SAFETY: checked views of guest RAM, used synchronously by writev.
            try tap.write(frame, count: count)
            txFrames += 1
        } catch {
            txDropped += 1
        }
    }
}
