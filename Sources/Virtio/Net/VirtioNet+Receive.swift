import CKVM
import GuestMemory
import Network
#if canImport(Glibc)
import Glibc
#endif

/// Receive (TAP → guest). Receive chains are popped ahead of each frame: one
/// chain without mergeable buffers, else chains for as many bytes as the last
/// frame had. While frames are small (the last one no longer than `bounceLimit`)
/// each is `read` into the staging buffer `frame` and copied into the chains:
/// the kernel then writes cache-hot memory, and that plus our copy costs less
/// than its copy straight into guest buffers (docs/virtio.md). Larger frames are
/// `readv`ed straight into the chains (the vnet header included), with the staging
/// buffer as the readv's last iovec, so a frame larger than the chains popped is
/// never cut. Either way such a frame is, with mergeable buffers, placed whole by
/// copying (`place`), as a frame that waits for buffers is. Frames come until the
/// TAP is empty, the ring is, or `batch` is reached; used.idx is published every
/// `publishEvery` frames and at the end, and the interrupt (if the driver wants
/// one) is sent once.
extension VirtioNet {
    enum Placement { case placed, noBuffers, dropped }

    /// What one direct read did.
    private enum DirectRead { case placed, dropped, tapEmpty, noBuffers, staged }

    func receive() {
        guard let context, !context.isBroken, context.queues[Self.rxQueue].isReady else { return }
        let queue = context.queues[Self.rxQueue]
        let mergeable = context.hasFeature(Feature.mergeableRxBuffers)
        var placed = 0
        do {
            var waiting = false
            frames: for _ in 0..<Self.batch {
                if let length = frameLength {
                    let seen = try queue.availIndex()
                    switch try place(length, context: context) {
                    case .placed: placed += 1; rxFrames += 1; frameLength = nil
                    case .dropped: rxDropped += 1; frameLength = nil
                    case .noBuffers:
                        // Ask for a notification when buffers come; if some came meanwhile, retry now.
                        _ = try queue.enableNotification()
                        if try queue.availIndex() != seen { continue }
                        waiting = true
                        break frames
                    }
                } else {
                    switch try readDirect(queue: queue, memory: context.memory, mergeable: mergeable) {
                    case .placed: placed += 1; rxFrames += 1
                    case .dropped: rxDropped += 1
                    case .staged: rxStaged += 1 // placed from `frame` on the next turn
                    case .tapEmpty: break frames
                    case .noBuffers:
                        // Nothing popped ahead, so avail.idx == nextAvail: any pending chain is new.
                        if try queue.enableNotification() { continue }
                        waiting = true
                        break frames
                    }
                }
                if placed > 0, placed % Self.publishEvery == 0 { try queue.publishUsed() }
            }
            giveBackAhead(queue)
            if waiting != tapPaused {
                tapPaused = waiting
                try context.modifyWatch(tap.fileDescriptor, events: waiting ? 0 : UInt32(EPOLLIN.rawValue))
            }
            try queue.publishUsed()
        } catch {
            giveBackAhead(queue)
            try? queue.publishUsed()
            context.deviceNeedsReset("virtio-net receive: \(error)")
            return
        }
        if placed > 0 { context.signalUsed(queue: Self.rxQueue) }
    }

    /// Chains popped ahead but not filled go back to the ring: between wake-ups the
    /// queue's state (what a snapshot saves) holds no chain the device only looked at.
    func giveBackAhead(_ queue: SplitQueue) {
        let unused = rxAhead.count - rxAheadStart
        if unused > 0 { queue.undoPop(UInt16(unused)) }
        rxAhead.removeAll(keepingCapacity: true)
        rxAheadStart = 0
    }

    /// Pops a receive chain, refusing one the device cannot write a frame into.
    private func popReceiveChain(_ queue: SplitQueue) throws -> DescriptorChain? {
        guard let chain = try queue.popAvailable() else { return nil }
        // Already taken from the ring and not answerable in order: only a reset helps.
        if let fault = chain.fault { throw fault }
        guard !chain.buffers.isEmpty, chain.buffers.allSatisfy(\.isWritable) else { throw VirtqueueError.readableAfterWritable }
        return chain
    }

    private func writableLength(_ chain: DescriptorChain) -> UInt64 {
        chain.buffers.reduce(0) { $0 + UInt64($1.length) }
    }

    /// Reads the next frame from the TAP into the chains popped ahead (through
    /// `frame` while frames are small, see above).
    private func readDirect(queue: SplitQueue, memory: GuestMemory, mergeable: Bool) throws -> DirectRead {
        // Pop ahead: one chain, or (mergeable) enough for a frame as long as the last.
        var ahead = UInt64(0)
        for i in rxAheadStart..<rxAhead.count { ahead += writableLength(rxAhead[i]) }
        while rxAhead.count == rxAheadStart || (mergeable && ahead < UInt64(rxLastLength)) {
            guard let chain = try popReceiveChain(queue) else { break }
            rxAhead.append(chain)
            ahead += writableLength(chain)
        }
        guard rxAhead.count > rxAheadStart else { return .noBuffers }

        // iovecs over the chains (whole chains only, the last iovec kept for `frame`).
        var count = 0
        var chains = 0
        var capacity = 0
        for i in rxAheadStart..<rxAhead.count {
            let before = count
            var fits = true
            for b in rxAhead[i].buffers {
                fits = try appendIovecs(b, memory: memory, count: &count)
                if !fits { break }
            }
            guard fits else { count = before; break }
            chains += 1
            capacity += Int(writableLength(rxAhead[i]))
            if !mergeable { break }
        }
        guard chains > 0 else { throw VirtqueueError.chainTooLong(limit: Self.maxIovecs - 1) }

        if rxLastLength <= Self.bounceLimit {
            // Small frames expected: read() into `frame`, then copy into the chains.
            guard let n = try tap.read(into: frame) else { return .tapEmpty }
            guard n > Tap.vnetHeaderSize, n <= frame.count else { return .dropped } // runt, or cut off
            rxLastLength = n
            if n > capacity {
                // Without mergeable buffers a frame must fit one chain: dropped, chain kept.
                guard mergeable else { return .dropped }
                // Already whole in `frame`: placed by copying once there are chains enough.
                giveBackAhead(queue)
                frameLength = n
                return .staged
            }
            var done = 0
            for i in 0..<count where done < n {
                let length = min(iovecs[i].iov_len, n - done)
                memcpy(iovecs[i].iov_base, frame.baseAddress! + done, length)
                done += length
            }
            markReceived(bytes: n, chains: chains, memory: memory)
            rxCopied += 1
            return try complete(n, queue: queue, memory: memory)
        }

        iovecs[count] = iovec(iov_base: frame.baseAddress, iov_len: frame.count)
        guard let n = try tap.read(iovecs, count: count + 1) else { return .tapEmpty }
        markReceived(bytes: min(n, capacity), chains: chains, memory: memory)
        guard n > Tap.vnetHeaderSize, n <= capacity + frame.count else { return .dropped } // runt, or cut off
        rxLastLength = min(n, Self.maxFrame)
        if n > capacity {
            // Without mergeable buffers a frame must fit one chain: dropped, chain kept.
            guard mergeable else { return .dropped }
            // The tail went to `frame`: put the guest part in front of it and place
            // the whole frame by copying, once there are chains enough.
            let base = frame.baseAddress!
            memmove(base + capacity, base, n - capacity)
            var done = 0
            for i in 0..<count where done < capacity {
                let len = min(iovecs[i].iov_len, capacity - done)
                memcpy(base + done, iovecs[i].iov_base, len)
                done += len
            }
            giveBackAhead(queue)
            frameLength = n
            return .staged
        }
        return try complete(n, queue: queue, memory: memory)
    }

    /// Finishes a frame of `n` bytes now in the chains popped ahead: writes
    /// num_buffers and adds the chains it filled to the used ring.
    private func complete(_ n: Int, queue: SplitQueue, memory: GuestMemory) throws -> DirectRead {
        // num_buffers (vnet header bytes 10–11): the TAP leaves them alone.
        var used = 0
        var left = n
        while left > 0 {
            let chain = rxAhead[rxAheadStart + used]
            let length = min(Int(writableLength(chain)), left)
            left -= length
            used += 1
        }
        let numBuffers = UInt16(used).littleEndian
        if iovecs[0].iov_len >= Tap.vnetHeaderSize {
            iovecs[0].iov_base!.storeBytes(of: numBuffers, toByteOffset: 10, as: UInt16.self)
        } else {
            let stream = rxAhead[rxAheadStart..<(rxAheadStart + used)].flatMap(\.buffers)
            try withUnsafeBytes(of: numBuffers) { _ = try stream.slice(from: 10, length: 2).write(to: memory, from: $0) }
        }
        left = n
        for _ in 0..<used {
            let chain = rxAhead[rxAheadStart]
            let length = min(Int(writableLength(chain)), left)
            try queue.addUsed(head: chain.head, length: UInt32(length), publish: false)
            left -= length
            rxAheadStart += 1
        }
        if rxAheadStart == rxAhead.count {
            rxAhead.removeAll(keepingCapacity: true)
            rxAheadStart = 0
        }
        return .placed
    }

    /// Appends host views of `buffer` to `iovecs`; false when they would not fit
    /// (one iovec stays free for the staging buffer).
    func appendIovecs(_ buffer: GuestBuffer, memory: GuestMemory, count: inout Int) throws -> Bool {
        // One region (the usual case) without building an array. Transient: the
        // readv/writev is over before this wake-up ends, and receive marks what it wrote.
        if let view = try? memory.transientBuffer(at: buffer.address, length: UInt64(buffer.length)) {
            guard count < Self.maxIovecs - 1 else { return false }
            iovecs[count] = iovec(iov_base: view.baseAddress, iov_len: view.count)
            count += 1
            return true
        }
        let views = try memory.hostBuffers(buffer.address, length: UInt64(buffer.length))
        guard count + views.count < Self.maxIovecs else { return false }
        for view in views {
            iovecs[count] = iovec(iov_base: view.baseAddress, iov_len: view.count)
            count += 1
        }
        return true
    }

    /// Marks the first `bytes` of the popped-ahead chains as written by the VMM (readv
    /// wrote them through host views, which the dirty log for migration cannot see).
    private func markReceived(bytes: Int, chains: Int, memory: GuestMemory) {
        var left = bytes
        for i in rxAheadStart..<(rxAheadStart + chains) where left > 0 {
            for b in rxAhead[i].buffers where left > 0 {
                let n = min(Int(b.length), left)
                memory.markWritten(b.address, length: UInt64(n))
                left -= n
            }
        }
    }

    /// Copies the staged frame into receive chains: as many as it needs with
    /// mergeable buffers (num_buffers says how many), else exactly one.
    func place(_ length: Int, context: VirtioDeviceContext) throws -> Placement {
        let queue = context.queues[Self.rxQueue]
        let mergeable = context.hasFeature(Feature.mergeableRxBuffers)
        var chains: [DescriptorChain] = []
        var room: UInt64 = 0
        while room < UInt64(length) {
            // Even the whole ring cannot hold this frame (tiny mergeable buffers): drop it
            // rather than wait for buffers that can never come.
            if chains.count >= Int(queue.size) {
                queue.undoPop(UInt16(chains.count))
                return .dropped
            }
            guard let chain = try popReceiveChain(queue) else {
                queue.undoPop(UInt16(chains.count))
                return .noBuffers
            }
            chains.append(chain)
            room += writableLength(chain)
            if !mergeable { break }
        }
        guard room >= UInt64(length) else {
            // Without mergeable buffers the driver must post buffers for the largest
            // frame it negotiated; this one cannot fit, so it is dropped and the buffer kept.
            queue.undoPop(UInt16(chains.count))
            return .dropped
        }
        frame.storeBytes(of: UInt16(chains.count).littleEndian, toByteOffset: 10, as: UInt16.self) // num_buffers
        var offset = 0
        for chain in chains {
            let n = min(Int(writableLength(chain)), length - offset)
            // GuestMemory.write marks the pages written.
            try chain.buffers.write(to: context.memory, from: UnsafeRawBufferPointer(rebasing: frame[offset..<(offset + n)]))
            try queue.addUsed(head: chain.head, length: UInt32(n), publish: false)
            offset += n
        }
        return .placed
    }
}
