import GuestMemory
import Storage

/// virtio-blk (device ID 2, virtio 1.2 §5.2) over a `DiskImage`. Data I/O goes
/// through the storage layer's `AsyncDiskEngine`; a request is completed (status
/// byte, used ring, interrupt) by the disk I/O thread that moved its data, under
/// the device lock when that lock is free, otherwise on the event loop.
// Sound because: its mutable state is touched only in device callbacks and completions, all run with the transport's device lock held (completions on an I/O thread too: `tryLocked`).
public final class VirtioBlock: VirtioDevice, @unchecked Sendable {
    /// Feature bits (§5.2.3).
    public enum Feature {
        public static let segMax: UInt64 = 1 << 2
        public static let readOnly: UInt64 = 1 << 5
        public static let blockSize: UInt64 = 1 << 6
        public static let flush: UInt64 = 1 << 9
        public static let discard: UInt64 = 1 << 13
        public static let writeZeroes: UInt64 = 1 << 14
    }
    static let sectorSize: UInt64 = 512
    /// Largest discard / write-zeroes request, in sectors, and segments per request.
    static let maxDiscardSectors: UInt32 = 1 << 22
    static let maxDiscardSegments: UInt32 = 16
    /// Largest read or write: the used length (data + status byte) is a 32-bit field.
    /// Buffers are only checked to lie in RAM, so overlapping ones can add up past
    /// 4 GiB; such a request gets IOERR.
    static let maxDataBytes: UInt64 = UInt64(UInt32.max) / sectorSize * sectorSize
    /// GET_ID answers with at most this many bytes (§5.2.6: VIRTIO_BLK_ID_BYTES).
    static let idBytes = 20
    /// Adjacent reads or writes popped together are merged into one transfer of
    /// at most this many bytes and segments (one readv/writev: IOV_MAX).
    static let maxMergedBytes: UInt64 = 1 << 20
    static let maxMergedSegments = 1024

    public let deviceType = VirtioDeviceType.block
    public let queueMaxSizes: [UInt16]
    public let image: DiskImage
    public let serial: String?
    let engine: AsyncDiskEngine
    private var context: VirtioDeviceContext?
    /// Bumped at reset: completions of requests from before it must not touch the rings.
    private var generation = 0
    private var completedSinceSignal = false
    /// The run of adjacent reads or writes being merged (`MergedRun`), submitted
    /// when a request does not continue it and at the end of each notification.
    private var run = MergedRun()
    /// Requests that went to the disk as part of a merged transfer (for tests and benchmarks).
    public private(set) var mergedRequests = 0

    /// Wraps an open image. `queueSize` is QueueNumMax of the one request queue
    /// (a power of two, at least 4: a request needs a header and a status descriptor).
    public init(image: DiskImage, serial: String? = nil, queueSize: UInt16 = 256, synchronousIO: Bool = false) throws {
        if let serial, serial.utf8.count > Self.idBytes {
            throw OptionError("serial '\(serial)' is longer than \(Self.idBytes) bytes")
        }
        guard queueSize >= 4, queueSize & (queueSize - 1) == 0 else {
            throw OptionError("queue size \(queueSize) is not a power of two of at least 4")
        }
        self.image = image
        self.serial = serial
        queueMaxSizes = [queueSize]
        engine = try AsyncDiskEngine(image: image, queueDepth: 64, synchronous: synchronousIO)
    }

    /// Opens the image named by a `--disk` option (missing file, image locked by
    /// another process, bad format: the storage layer's `StorageError` says which).
    public convenience init(config: BlockDeviceConfig) throws {
        let image = try DiskImageOpener.open(path: config.path, format: config.format, readOnly: config.readOnly)
        try self.init(image: image, serial: config.serial)
    }

    public var deviceFeatures: UInt64 {
        var f = Feature.segMax | Feature.blockSize | Feature.flush
        f |= image.isReadOnly ? Feature.readOnly : Feature.discard | Feature.writeZeroes
        return f
    }

    /// Data descriptors per request: the queue size, less header and status.
    var segMax: UInt32 { UInt32(queueMaxSizes[0]) - 2 }

    /// Capacity in 512-byte sectors (a partial last sector is not exposed).
    public var capacity: UInt64 { image.virtualSize / Self.sectorSize }

    /// struct virtio_blk_config (§5.2.4), up to write_zeroes_may_unmap.
    var configBytes: [UInt8] {
        var c = [UInt8](repeating: 0, count: 60)
        func put<T: FixedWidthInteger>(_ v: T, _ at: Int) {
            withUnsafeBytes(of: v.littleEndian) { for (i, b) in $0.enumerated() { c[at + i] = b } }
        }
        put(capacity, 0)
        put(segMax, 12)                                  // seg_max
        put(UInt32(Self.sectorSize), 20)                 // blk_size
        put(Self.maxDiscardSectors, 36)                  // max_discard_sectors
        put(Self.maxDiscardSegments, 40)                 // max_discard_seg
        put(UInt32(8), 44)                               // discard_sector_alignment: 4 KiB
        put(Self.maxDiscardSectors, 48)                  // max_write_zeroes_sectors
        put(Self.maxDiscardSegments, 52)                 // max_write_zeroes_seg
        c[56] = 1                                        // write_zeroes_may_unmap
        return c
    }

    public func readConfig(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        Self.copyConfig(configBytes, offset: offset, into: data)
    }

    public func writeConfig(offset: Int, data: UnsafeRawBufferPointer) {} // nothing writable without CONFIG_WCE

    /// No feature of this device depends on another.
    public func acceptsFeatures(_ features: UInt64) -> Bool { true }

    public func activate(_ context: VirtioDeviceContext) throws {
        self.context = context
        try context.watch(engine.completionFD) { [unowned self] _ in
            self.engine.processCompletions()
            self.signalIfCompleted()
        }
        // The I/O thread that finished a transfer completes the request itself
        // (one wake-up of the loop less per batch); when the lock is busy the
        // engine's eventfd brings the batch to the loop instead.
        engine.completeOnIOThreads { [weak self, weak context] body in
            guard let self, let context else { return false }
            return context.tryLocked {
                body()
                self.signalIfCompleted()
            }
        }
    }

    public func reset() {
        generation += 1
        context = nil
        engine.completeOnIOThreads(nil)
        // Let requests in flight finish before the driver reuses their buffers.
        engine.drain()
    }

    public func queueNotified(_ index: Int) {
        guard let context, index == 0, !context.isBroken else { return }
        let queue = context.queues[0]
        do {
            // The transfers of every request popped here go to the I/O threads together.
            try engine.batch {
                defer { submitRun() }
                repeat {
                    try queue.disableNotification()
                    while let chain = try queue.popAvailable() {
                        handle(chain, context: context)
                        if context.isBroken { return }
                    }
                } while try queue.enableNotification()
            }
            if context.isBroken { return }
        } catch {
            context.deviceNeedsReset("virtio-blk request queue: \(error)")
        }
        signalIfCompleted()
    }

    // MARK: - Requests

    private func handle(_ chain: DescriptorChain, context: VirtioDeviceContext) {
        let memory = context.memory
        guard let request = BlockRequest(chain, memory: memory) else {
            // Malformed but answerable: IOERR in its last writable byte; otherwise the
            // driver cannot be told, and only a reset recovers the queue.
            if let status = BlockRequest.fallbackStatus(chain, memory: memory) {
                finish(chain.head, status: BlockRequest.statusIOErr, statusAt: status, written: 0)
            } else {
                context.deviceNeedsReset("virtio-blk: unanswerable chain \(chain.head): \(chain.fault?.description ?? "no header or status")")
            }
            return
        }
        // More data segments than the seg_max we advertised (header and status aside).
        if chain.buffers.count > Int(segMax) + 2 { return finish(request, BlockRequest.statusIOErr) }
        // Anything but a read or write goes after the run so far (a flush covers its writes).
        if request.type != BlockRequest.typeIn && request.type != BlockRequest.typeOut { submitRun() }
        switch request.type {
        case BlockRequest.typeIn, BlockRequest.typeOut:
            readOrWrite(request, memory: memory)
        case BlockRequest.typeFlush:
            if image.isReadOnly { return finish(request, BlockRequest.statusOK) }
            submit(request, .flush)
        case BlockRequest.typeGetID:
            guard request.dataOut.isEmpty else { return finish(request, BlockRequest.statusIOErr) }
            var id = [UInt8](repeating: 0, count: Self.idBytes)
            if let serial { id.replaceSubrange(0..<min(serial.utf8.count, Self.idBytes), with: serial.utf8.prefix(Self.idBytes)) }
            let n = (try? id.withUnsafeBytes { try request.dataIn.write(to: memory, from: $0) }) ?? 0
            finish(request, BlockRequest.statusOK, written: UInt32(n))
        case BlockRequest.typeDiscard, BlockRequest.typeWriteZeroes:
            discardOrZero(request, memory: memory)
        default:
            finish(request, BlockRequest.statusUnsupported)
        }
    }

    /// The byte range `sector*512 ..< +length` if it lies inside the disk, checked without overflow.
    private func diskRange(sector: UInt64, length: UInt64) -> UInt64? {
        let (offset, o1) = sector.multipliedReportingOverflow(by: Self.sectorSize)
        let (end, o2) = offset.addingReportingOverflow(length)
        guard !o1, !o2, end <= capacity * Self.sectorSize else { return nil }
        return offset
    }

    private func readOrWrite(_ request: BlockRequest, memory: GuestMemory) {
        let isRead = request.type == BlockRequest.typeIn
        if !isRead && image.isReadOnly { return finish(request, BlockRequest.statusIOErr) }
        let data = isRead ? request.dataIn : request.dataOut
        let length = data.totalLength
        // Data in the wrong direction (e.g. a read into a device-readable buffer) is an error, not a no-op.
        let wrongWay = isRead ? request.dataOut : request.dataIn
        guard wrongWay.isEmpty, length % Self.sectorSize == 0, length <= Self.maxDataBytes,
              let written = UInt32(exactly: length),
              let offset = diskRange(sector: request.sector, length: length),
              let buffers = try? data.hostBuffers(in: memory)
        else { return finish(request, BlockRequest.statusIOErr) }
        // A driver that did not accept FLUSH expects write-through (§5.2.6.3).
        if !isRead && context?.hasFeature(Feature.flush) == false {
            submitRun()
            let write = DiskIORequest.write(offset: offset, buffers: buffers.map { UnsafeRawBufferPointer($0) })
            return submitAll(request, [write, .flush])
        }
        if !run.continues(isRead: isRead, offset: offset, length: length, segments: buffers.count) { submitRun() }
        run.add(request, isRead: isRead, offset: offset, length: length, buffers: buffers, written: isRead ? written : 0)
    }

    /// Submits the run of adjacent requests: a lone request as it is (the random
    /// I/O path, nothing allocated), several as one transfer whose result each
    /// of them gets (an error fails them all, as QEMU's merged requests do).
    private func submitRun() {
        guard let first = run.requests.first else { return }
        defer { run.reset() }
        let operation: DiskIORequest = run.isRead
            ? .read(offset: run.offset, buffers: run.buffers)
            : .write(offset: run.offset, buffers: run.buffers.map { UnsafeRawBufferPointer($0) })
        if run.requests.count == 1 { return submit(first.request, operation, written: first.written) }
        mergedRequests += run.requests.count
        let requests = run.requests
        let generation = self.generation
        // SAFETY: as in submitAll.
        let memory = context?.memory
        engine.submit(operation) { [unowned self] result in
            withExtendedLifetime(memory) {}
            guard generation == self.generation else { return }
            let failed: Bool
            if case .failure = result { failed = true } else { failed = false }
            for (request, written) in requests {
                self.finish(request, failed ? BlockRequest.statusIOErr : BlockRequest.statusOK, written: written)
            }
        }
    }

    /// DISCARD and WRITE_ZEROES carry segments {le64 sector, le32 num_sectors, le32 flags}.
    private func discardOrZero(_ request: BlockRequest, memory: GuestMemory) {
        let isDiscard = request.type == BlockRequest.typeDiscard
        if image.isReadOnly { return finish(request, BlockRequest.statusIOErr) }
        let length = request.dataOut.totalLength
        guard length > 0, length % 16 == 0, length / 16 <= UInt64(Self.maxDiscardSegments),
              let bytes = try? request.dataOut.read(from: memory, count: Int(length))
        else { return finish(request, BlockRequest.statusIOErr) }
        var operations: [DiskIORequest] = []
        for at in stride(from: 0, to: bytes.count, by: 16) {
            let (sector, sectors, flags) = bytes.withUnsafeBytes {
                (UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)),
                 UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: at + 8, as: UInt32.self)),
                 UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: at + 12, as: UInt32.self)))
            }
            // §5.2.6.2: unmap is only meaningful for write-zeroes; other flag bits are reserved.
            guard flags & ~(isDiscard ? 0 : 1) == 0 else { return finish(request, BlockRequest.statusUnsupported) }
            guard sectors <= Self.maxDiscardSectors,
                  let offset = diskRange(sector: sector, length: UInt64(sectors) * Self.sectorSize)
            else { return finish(request, BlockRequest.statusIOErr) }
            let n = UInt64(sectors) * Self.sectorSize
            // Storage deallocates where it can in both cases, so the unmap hint needs no separate path.
            operations.append(isDiscard ? .discard(offset: offset, length: n) : .writeZeroes(offset: offset, length: n))
        }
        submitAll(request, operations)
    }

    // MARK: - Completion

    /// Submits one operation (reads, writes with FLUSH negotiated, flushes: the
    /// hot path, with no array or shared counters to allocate).
    private func submit(_ request: BlockRequest, _ operation: DiskIORequest, written: UInt32 = 0) {
        let generation = self.generation
        // SAFETY: as in submitAll.
        let memory = context?.memory
        engine.submit(operation) { [unowned self] result in
            withExtendedLifetime(memory) {}
            guard generation == self.generation else { return }
            if case .failure = result {
                self.finish(request, BlockRequest.statusIOErr)
            } else {
                self.finish(request, BlockRequest.statusOK, written: written)
            }
        }
    }

    /// Submits the operations; the request completes when all of them have, with
    /// IOERR if any failed.
    private func submitAll(_ request: BlockRequest, _ operations: [DiskIORequest], written: UInt32 = 0) {
        let generation = self.generation
        // SAFETY: the buffers in `operations` point into guest RAM; holding `memory`
        // until the last completion keeps that mapping alive while the kernel uses it.
        let memory = context?.memory
        var remaining = operations.count
        var failed = false
        for op in operations {
            engine.submit(op) { [unowned self] result in
                remaining -= 1
                if case .failure = result { failed = true }
                withExtendedLifetime(memory) {}
                guard remaining == 0, generation == self.generation else { return }
                if failed {
                    self.finish(request, BlockRequest.statusIOErr)
                } else {
                    self.finish(request, BlockRequest.statusOK, written: written)
                }
            }
        }
    }

    private func finish(_ request: BlockRequest, _ status: UInt8, written: UInt32 = 0) {
        finish(request.head, status: status, statusAt: request.status, written: status == BlockRequest.statusOK ? written : 0)
    }

    /// Writes the status byte and returns the chain; `written` counts data bytes
    /// before it (the used length adds one for the status byte).
    private func finish(_ head: UInt16, status: UInt8, statusAt: GuestAddress, written: UInt32) {
        guard let context else { return }
        do {
            try context.memory.store(status, to: statusAt)
            try context.queues[0].addUsed(head: head, length: min(written, UInt32.max - 1) + 1)
            completedSinceSignal = true
        } catch {
            context.deviceNeedsReset("virtio-blk used ring: \(error)")
        }
    }

    func signalIfCompleted() {
        guard completedSinceSignal, let context else { return }
        completedSinceSignal = false
        context.signalUsed(queue: 0)
    }
}
