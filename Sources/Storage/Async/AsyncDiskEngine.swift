import CFileIO
import Posix
#if canImport(Glibc)
import Glibc
#endif

/// Runs block requests for one disk without blocking the device's event loop.
///
/// Usage, all on the event-loop thread:
/// ```swift
/// let engine = try AsyncDiskEngine(image: image, queueDepth: 32)
/// try loop.add(engine.completionFD) { _ in engine.processCompletions() }
/// engine.submit(.read(offset: 4096, buffers: [buf])) { result in
///     // .success(bytesTransferred) or .failure(StorageError) → virtio status
/// }
/// ```
/// How it works: plain data ranges (raw files; allocated qcow2 clusters, whose
/// guest→host mapping is resolved synchronously from the metadata cache) become
/// jobs for the engine's I/O threads (`IOWorkerPool`: `preadv`/`pwritev` straight
/// into/out of the caller's buffers; results signalled on an eventfd, or completed
/// on the I/O thread itself under the owner's lock: `completeOnIOThreads`). Everything
/// else — reads through a backing file or of a compressed cluster, writes that
/// allocate, flush, discard, write-zeroes — runs synchronously inside `submit`.
/// With `synchronous` (or `SKIFF_AIO=sync`) every request runs that way.
///
/// Guarantees: a completion is never called from inside `submit`; it runs from
/// `processCompletions()` (or `drain()`), after `completionFD` became readable, or
/// on an I/O thread holding the owner's lock (`completeOnIOThreads`).
/// Flush, discard and write-zeroes first wait for the data I/O in flight, so a
/// flush covers every write completed before it and a freed cluster is never
/// reused under an in-flight write. Not thread-safe: one thread (or one lock)
/// owns the engine and its image; the I/O threads only copy data, and touch the
/// engine only through the owner's lock (`completeOnIOThreads`).
public final class AsyncDiskEngine {
    public typealias Completion = (Result<Int, StorageError>) -> Void

    public let image: DiskImage
    /// Data requests in flight at once.
    public let queueDepth: Int
    /// eventfd, readable when completions are waiting for `processCompletions()`.
    public var completionFD: Int32 { completion.fileDescriptor }
    private let completion: EventFD
    /// True when data I/O goes to the I/O threads, false in the synchronous fallback.
    public var isAsynchronous: Bool { pool != nil }
    /// Requests accepted whose completion has not run yet.
    public private(set) var outstanding = 0

    private let pool: IOWorkerPool?
    /// Transfer jobs in flight at most (each request needs one per contiguous host run).
    private let maxIOCBs: Int
    /// Data requests (not transfers) in flight, bounded by `queueDepth`.
    private var inFlightRequests = 0
    /// Transfer slots, created at first use and reused (with their iovec arrays):
    /// a steady stream of requests allocates none.
    private var slots: [Slot?]
    private var freeSlots: [Int]
    private var inFlightIOCBs = 0
    private var backlog: [Operation] = []
    private var ready: [(Completion, Result<Int, StorageError>)] = []
    /// The request's buffers as iovecs (reused between requests).
    private var scratch: [iovec] = []
    /// Jobs of the current `batch`, queued to the pool at its end (one lock, at most
    /// one wake-up per job).
    private var pendingJobs: [IOWorkerPool.Job] = []
    private var batching = 0
    /// True while an I/O thread runs completions (under the owner's lock).
    private var completingOnIOThread = false
    /// Reads and writes up to this many bytes (one host range) are done by the
    /// submitting thread itself: for a 4 KiB request the hand-over to an I/O thread
    /// and back (two wake-ups of sleeping threads) costs more than the copy.
    let inlineBytes: Int

    /// One accepted request and what is left of it.
    private final class Operation {
        let request: DiskIORequest
        let completion: Completion
        var remaining = 0
        var bytes = 0
        /// Went to the I/O threads (counts against the queue depth until it completes).
        var async = false
        var error: StorageError?
        init(_ request: DiskIORequest, _ completion: @escaping Completion) {
            self.request = request
            self.completion = completion
        }
    }

    /// One transfer slot with the iovec array the job points at (which must outlive
    /// the I/O; the worker may advance it after a short transfer). Reused.
    private final class Slot {
        var op: Operation?
        private(set) var iovecs: UnsafeMutablePointer<iovec>
        private var capacity = 4
        private(set) var count = 0
        private(set) var expected = 0
        init() { iovecs = .allocate(capacity: capacity) }
        deinit { iovecs.deallocate() }

        func fill<C: Collection>(_ op: Operation, _ vectors: C) where C.Element == iovec {
            if vectors.count > capacity {
                iovecs.deallocate()
                capacity = max(vectors.count, capacity * 2)
                iovecs = .allocate(capacity: capacity)
            }
            self.op = op
            count = 0
            expected = 0
            for v in vectors {
                (iovecs + count).initialize(to: v)
                count += 1
                expected += v.iov_len
            }
        }
    }

    /// - Parameters:
    ///   - queueDepth: data requests in flight at most (1...1024).
    ///   - ioThreads: threads doing the data transfers (started by `startIOThreads`
    ///     or, failing that, at the first transfer).
    ///   - synchronous: no I/O threads: every request runs inside `submit`.
    ///   - inlineBytes: reads up to this size that the page cache holds run on the submitting thread.
    public init(image: DiskImage, queueDepth: Int = 32, ioThreads: Int = 4, inlineBytes: Int = 16384,
                synchronous: Bool = false) throws {
        guard (1 ... 1024).contains(queueDepth) else {
            throw StorageError(.invalidArgument, "queue depth \(queueDepth) is not in 1...1024")
        }
        self.image = image
        self.queueDepth = queueDepth
        do {
            completion = try EventFD("disk completions")
        } catch {
            throw StorageError(.io, "\(error)")
        }
        // A request may become several transfers (a qcow2 request spanning
        // non-contiguous clusters), so there are more slots than requests.
        let iocbs = min(4096, max(64, queueDepth * 16))
        maxIOCBs = iocbs
        slots = Array(repeating: nil, count: iocbs)
        freeSlots = Array((0 ..< iocbs).reversed())
        let forcedSync = getenv("SKIFF_AIO").map { String(cString: $0) == "sync" } ?? false
        // SKIFF_DISK_IO_THREADS: a measuring knob (device-bench), 1...64.
        let threads = getenv("SKIFF_DISK_IO_THREADS").flatMap { Int(String(cString: $0)) }.map { min(64, max(1, $0)) } ?? ioThreads
        // SKIFF_DISK_INLINE_BYTES: likewise (0: every transfer on the I/O threads).
        self.inlineBytes = getenv("SKIFF_DISK_INLINE_BYTES").flatMap { Int(String(cString: $0)) }.map { max(0, $0) } ?? inlineBytes
        pool = synchronous || forcedSync ? nil : IOWorkerPool(threads: threads, notifyFD: completion.fileDescriptor)
    }

    deinit {
        drain()
        pool?.stop()
    }

    /// Starts the I/O threads now rather than at the first transfer; each runs
    /// `onStart` first (the VMM narrows its seccomp filter there). Call before the
    /// caller's thread loses the right to create threads.
    public func startIOThreads(onStart: (@Sendable () throws -> Void)? = nil) throws {
        try pool?.start(onStart: onStart)
    }

    /// Ends the I/O threads once every request has completed (they start again
    /// at the next transfer). The owner of a closed image calls it so that no idle
    /// thread outlives the disk.
    public func stopIOThreads() {
        drain()
        pool?.stop()
    }

    /// Lets the I/O threads complete requests themselves, saving the owner a
    /// wake-up per batch: the thread that queued the first result calls
    /// `runLocked(body)`, which must run `body` holding the lock that guards every
    /// other use of this engine and return true — or return false at once, without
    /// running it, when that lock is not free (or the owner is going away); the
    /// eventfd then wakes the owner as usual. It must never wait for the lock: its
    /// holder may be waiting for the I/O threads (`drain`). Completions then run on
    /// an I/O thread with that lock held; requests they submit wait for the owner's
    /// next `processCompletions()`. nil: completions only on the owner's thread.
    public func completeOnIOThreads(_ runLocked: (@Sendable (_ body: () -> Void) -> Bool)?) {
        guard let pool else { return }
        guard let runLocked else { return pool.setOnResults(nil) }
        let owner = WeakEngine(self)
        pool.setOnResults {
            var took = false
            let locked = runLocked {
                guard let engine = owner.engine else { return }
                engine.completeOnIOThread()
                took = true
            }
            return locked && took
        }
    }

    /// Runs `body` (which submits requests), then queues its transfers to the I/O
    /// threads together (one lock, at most one wake-up per job) and runs the
    /// completions of requests that finished at once (small ones done inline,
    /// errors) — after `body`, so still never from inside `submit`, and with no
    /// eventfd round trip.
    public func batch<T>(_ body: () throws -> T) rethrows -> T {
        batching += 1
        defer {
            batching -= 1
            if batching == 0 {
                queuePending()
                if !completingOnIOThread { runReady() }
            }
        }
        return try body()
    }

    /// Accepts a request; `completion` runs later from `processCompletions()` with
    /// the number of bytes transferred (0 for flush/discard/write-zeroes) or the error.
    public func submit(_ request: DiskIORequest, completion: @escaping Completion) {
        let op = Operation(request, completion)
        outstanding += 1
        if completingOnIOThread {
            // Started by the owner, not here: a flush would wait for the I/O threads on one of them.
            backlog.append(op)
            self.completion.signal()
        } else if backlog.isEmpty {
            start(op)
            // Finished synchronously: its completion runs at the end of the batch, or
            // at the next processCompletions().
            if !ready.isEmpty && batching == 0 { self.completion.signal() }
        } else {
            backlog.append(op)
        }
    }

    /// Reaps finished I/O and runs the completions that are ready. Call when
    /// `completionFD` is readable; harmless to call at any other time.
    public func processCompletions() {
        completion.consume()
        reap(waitForAll: false)
        pumpBacklog()
        runReady()
    }

    /// Blocks until every accepted request has completed, running their completions.
    public func drain() {
        while outstanding > 0 {
            reap(waitForAll: true)
            pumpBacklog()
            if ready.isEmpty && inFlightIOCBs == 0 && !backlog.isEmpty { pumpBacklog() }
            runReady()
            if ready.isEmpty && inFlightIOCBs == 0 && backlog.isEmpty { break }
        }
    }

    // MARK: - Internals

    /// The I/O threads' side of `completeOnIOThreads`, with the owner's lock held.
    private func completeOnIOThread() {
        completingOnIOThread = true
        reap(waitForAll: false)
        runReady()
        completingOnIOThread = false
        // Requests waiting for room (or submitted by the completions) start on the owner's thread.
        if !backlog.isEmpty { completion.signal() }
    }

    private func queuePending() {
        guard let pool, !pendingJobs.isEmpty else { return }
        pendingJobs.withUnsafeBufferPointer { pool.enqueue($0) }
        pendingJobs.removeAll(keepingCapacity: true)
    }

    private func slot(_ index: Int) -> Slot {
        if let slot = slots[index] { return slot }
        let slot = Slot()
        slots[index] = slot
        return slot
    }

    private func start(_ op: Operation) {
        switch op.request {
        case .flush, .discard, .writeZeroes:
            // Metadata-changing or ordering requests: wait for data I/O in flight first.
            reap(waitForAll: true)
            finish(op, result: runSynchronously(op.request))
        case .read(let offset, let buffers):
            scratch.removeAll(keepingCapacity: true)
            for b in buffers where b.count > 0 { scratch.append(iovec(iov_base: b.baseAddress, iov_len: b.count)) }
            startData(op, offset: offset, write: false)
        case .write(let offset, let buffers):
            scratch.removeAll(keepingCapacity: true)
            for b in buffers where b.count > 0 {
                scratch.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count))
            }
            startData(op, offset: offset, write: true)
        }
    }

    /// Starts a read or write whose buffers are in `scratch`.
    private func startData(_ op: Operation, offset: UInt64, write: Bool) {
        guard let pool else { return finish(op, result: runSynchronously(op.request)) }
        if !pool.isStarted {
            do { try pool.start() } catch { return finish(op, result: runSynchronously(op.request)) }
        }
        var total = 0
        for v in scratch { total += v.iov_len }
        let extents: [DiskExtent]
        do {
            extents = try image.dataExtents(at: offset, length: UInt64(total), forWrite: write)
        } catch {
            return finish(op, result: .failure(Self.storageError(error, image)))
        }
        let align = image.ioAlignment
        // The common case (raw; qcow2 within contiguous clusters): one host range,
        // one job, no arrays built.
        if extents.count == 1, extents[0].length == UInt64(total), case .host(let fd, let hostOffset) = extents[0].location,
           align <= 1, !scratch.isEmpty, scratch.count <= 1024 {
            // A small read the page cache holds whole is copied here, on the submitting
            // thread: cheaper than a hand-over and back. RWF_NOWAIT makes sure it never
            // waits for the disk (that would stall every device on this event loop); a
            // read it cannot finish at once, and every write (a buffered write may wait
            // for writeback, and ext4 refuses RWF_NOWAIT for those), goes to the I/O threads.
            if !write, total <= inlineBytes,
               scratch.withUnsafeBufferPointer({ cfileio_preadv_nowait(fd, $0.baseAddress, Int32($0.count), Int64(hostOffset)) }) == total {
                op.bytes = total
                return finish(op, result: .success(total))
            }
            guard !freeSlots.isEmpty, inFlightRequests < queueDepth else {
                backlog.insert(op, at: 0)
                return
            }
            op.async = true
            inFlightRequests += 1
            op.bytes = total
            op.remaining = 1
            let index = freeSlots.removeLast()
            let slot = slot(index)
            slot.fill(op, scratch)
            queueJob(IOWorkerPool.Job(fd: fd, offset: Int64(hostOffset), iovecs: slot.iovecs, count: slot.count, write: write, tag: index))
            return
        }
        var plan: [(fd: Int32, hostOffset: UInt64, iov: [iovec])] = []
        var cursor = IovecCursor(scratch)
        for extent in extents {
            let pieces = cursor.take(Int(extent.length))
            switch extent.location {
            case .synchronous:
                return finish(op, result: runSynchronously(op.request))
            case .zero:
                guard !write else { return finish(op, result: runSynchronously(op.request)) }
                for p in pieces { memset(p.iov_base, 0, p.iov_len) }
            case .host(let fd, let hostOffset):
                if align > 1 {
                    let m = align - 1
                    let ok = hostOffset & UInt64(m) == 0 && pieces.allSatisfy {
                        UInt(bitPattern: $0.iov_base) & UInt(m) == 0 && $0.iov_len & m == 0
                    }
                    if !ok { return finish(op, result: runSynchronously(op.request)) }
                }
                // readv/writev take at most IOV_MAX (1024) segments per call.
                var hostOff = hostOffset
                var index = 0
                while index < pieces.count {
                    let chunk = Array(pieces[index ..< min(pieces.count, index + 1024)])
                    plan.append((fd, hostOff, chunk))
                    hostOff += UInt64(chunk.reduce(0) { $0 + $1.iov_len })
                    index += chunk.count
                }
            }
        }
        if plan.isEmpty { return finish(op, result: .success(total)) }
        if plan.count > maxIOCBs { return finish(op, result: runSynchronously(op.request)) }
        if plan.count > freeSlots.count || inFlightRequests >= queueDepth {
            backlog.insert(op, at: 0)
            return
        }
        op.async = true
        inFlightRequests += 1
        op.bytes = total
        op.remaining = plan.count
        // Not `batch`: that runs completions, and this is inside `submit`.
        batching += 1
        defer {
            batching -= 1
            if batching == 0 { queuePending() }
        }
        do {
            for entry in plan {
                let index = freeSlots.removeLast()
                let slot = slot(index)
                slot.fill(op, entry.iov)
                queueJob(IOWorkerPool.Job(fd: entry.fd, offset: Int64(entry.hostOffset), iovecs: slot.iovecs,
                                          count: slot.count, write: write, tag: index))
            }
        }
    }

    /// Queues one transfer (at the end of the current batch, if any).
    private func queueJob(_ job: IOWorkerPool.Job) {
        inFlightIOCBs += 1
        pendingJobs.append(job)
        if batching == 0 { queuePending() }
    }

    /// Collects finished transfers. `waitForAll` blocks until none is in flight.
    private func reap(waitForAll: Bool) {
        guard let pool else { return }
        // Jobs of a batch still being built must be queued before anyone waits for them.
        queuePending()
        while inFlightIOCBs > 0 {
            let results = pool.takeResults(wait: waitForAll)
            if results.isEmpty { break }
            for r in results {
                let index = r.tag
                guard index >= 0, index < slots.count, let slot = slots[index], let op = slot.op else { continue }
                slot.op = nil
                freeSlots.append(index)
                inFlightIOCBs -= 1
                if op.error == nil { op.error = transferError(op, moved: r.result, expected: slot.expected) }
                op.remaining -= 1
                if op.remaining == 0 { finish(op) }
            }
            if !waitForAll { break }
        }
    }

    private func finish(_ op: Operation, result: Result<Int, StorageError>? = nil) {
        if op.async { op.async = false; inFlightRequests -= 1 }
        let r = result ?? (op.error.map { .failure($0) } ?? .success(op.bytes))
        ready.append((op.completion, r))
        // No eventfd write here: every caller runs `ready` next (reap → runReady) or
        // signals itself (`submit`), so a reaped batch costs no extra wake-up.
    }

    /// The error of a transfer that moved `moved` bytes (or -errno) of `expected`.
    private func transferError(_ op: Operation, moved: Int, expected: Int) -> StorageError? {
        if moved < 0 {
            let e = Int32(-moved)
            return StorageError(.io, "\(Self.name(op.request)) failed: \(String(cString: strerror(e)))", path: image.path, errno: e)
        }
        return moved < expected ? StorageError(.io, "short \(Self.name(op.request))", path: image.path) : nil
    }

    private func pumpBacklog() {
        while !backlog.isEmpty {
            let before = backlog.count
            let op = backlog.removeFirst()
            start(op)
            // start() puts it back at the head when the queue is still full.
            if backlog.count == before { break }
        }
    }

    private func runReady() {
        while !ready.isEmpty {
            let batch = ready
            ready.removeAll()
            for (completion, result) in batch {
                outstanding -= 1
                completion(result)
            }
        }
    }

    private func runSynchronously(_ request: DiskIORequest) -> Result<Int, StorageError> {
        do {
            switch request {
            case .read(var offset, let buffers):
                var total = 0
                try image.checkRange(offset, UInt64(buffers.reduce(0) { $0 + $1.count }))
                for b in buffers {
                    try image.read(into: b, at: offset)
                    offset += UInt64(b.count); total += b.count
                }
                return .success(total)
            case .write(var offset, let buffers):
                var total = 0
                try image.checkRange(offset, UInt64(buffers.reduce(0) { $0 + $1.count }))
                for b in buffers {
                    try image.write(b, at: offset)
                    offset += UInt64(b.count); total += b.count
                }
                return .success(total)
            case .flush:
                try image.flush()
            case .discard(let offset, let length):
                try image.discard(at: offset, length: length)
            case .writeZeroes(let offset, let length):
                try image.writeZeroes(at: offset, length: length)
            }
            return .success(0)
        } catch {
            return .failure(Self.storageError(error, image))
        }
    }

    private static func storageError(_ error: Error, _ image: DiskImage) -> StorageError {
        (error as? StorageError) ?? StorageError(.io, "\(error)", path: image.path)
    }

    private static func name(_ r: DiskIORequest) -> String {
        switch r {
        case .read: return "read"
        case .write: return "write"
        case .flush: return "flush"
        case .discard: return "discard"
        case .writeZeroes: return "write-zeroes"
        }
    }
}

/// Lets the I/O threads' hand-over find the engine without keeping it alive.
// Sound because: `engine` is a weak reference, only loaded; the engine it gives is used only with the owner's lock held.
private final class WeakEngine: @unchecked Sendable {
    weak var engine: AsyncDiskEngine?
    init(_ engine: AsyncDiskEngine) { self.engine = engine }
}

/// Walks a list of iovecs, handing out consecutive byte runs as iovec lists.
struct IovecCursor {
    private var iovecs: [iovec]
    private var index = 0
    private var used = 0

    init(_ iovecs: [iovec]) { self.iovecs = iovecs.filter { $0.iov_len > 0 } }

    mutating func take(_ count: Int) -> [iovec] {
        var out: [iovec] = []
        var left = count
        while left > 0, index < iovecs.count {
            let v = iovecs[index]
            let n = min(left, v.iov_len - used)
            out.append(iovec(iov_base: v.iov_base.map { $0 + used }, iov_len: n))
            used += n
            left -= n
            if used == v.iov_len { index += 1; used = 0 }
        }
        return out
    }
}
