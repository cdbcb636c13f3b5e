import CKVM
import Foundation
import Testing
@testable import Storage

/// Completions on the I/O threads (`completeOnIOThreads`), the eventfd fallback
/// when the owner's lock is busy, and `batch`.
@Suite struct AsyncEngineIOThreadTests {
    /// What the completions saw; its own lock, so that reading it never takes the
    /// engine's lock (which would make a hand-over fail).
    final class Tally: @unchecked Sendable {
        private let lock = NSLock()
        private var done = 0
        private var offOwner = 0
        private var failures = 0
        let owner = pthread_self()

        func record(_ result: Result<Int, StorageError>) {
            lock.lock(); defer { lock.unlock() }
            done += 1
            if pthread_equal(pthread_self(), owner) == 0 { offOwner += 1 }
            if case .failure = result { failures += 1 }
        }

        var counts: (done: Int, offOwner: Int, failures: Int) {
            lock.lock(); defer { lock.unlock() }
            return (done, offOwner, failures)
        }
    }

    private static func makeEngine(_ dir: TempDir, threads: Int = 2, inlineBytes: Int = 0) throws -> (AsyncDiskEngine, NSLock) {
        try RawImage.create(path: dir.file("d"), size: 4 << 20)
        let image = try DiskImageOpener.open(path: dir.file("d"), format: .raw)
        // inlineBytes 0 (the default here): every transfer goes to the I/O threads.
        let engine = try AsyncDiskEngine(image: image, queueDepth: 8, ioThreads: threads, inlineBytes: inlineBytes)
        try engine.startIOThreads()
        let lock = NSLock()
        engine.completeOnIOThreads { body in
            guard lock.try() else { return false }
            defer { lock.unlock() }
            body()
            return true
        }
        return (engine, lock)
    }

    /// Serves the eventfd as the device's event loop does, until `n` completions ran.
    /// Writes the file's first `bytes` back and drops them from the page cache,
    /// checked with mincore (DONTNEED may miss pages in another CPU's LRU batch).
    private static func evict(_ path: String, bytes: Int) throws {
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(fsync(fd) == 0)
        let map = mmap(nil, bytes, PROT_READ, MAP_SHARED, fd, 0)
        try #require(map != MAP_FAILED)
        defer { munmap(map, bytes) }
        var resident = [UInt8](repeating: 1, count: (bytes + 4095) / 4096)
        for _ in 0 ..< 200 {
            _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
            if mincore(map, bytes, &resident) == 0 && resident.allSatisfy({ $0 & 1 == 0 }) { return }
            usleep(5_000)
        }
        Issue.record("the page cache kept the file's pages")
    }

    private static func serve(_ engine: AsyncDiskEngine, _ lock: NSLock, _ tally: Tally, until n: Int) -> Bool {
        let end = Date().addingTimeInterval(10)
        while tally.counts.done < n {
            if Date() > end { return false }
            var pfd = pollfd(fd: engine.completionFD, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 1) == 1 {
                lock.lock()
                engine.processCompletions()
                lock.unlock()
            }
        }
        return true
    }

    /// Is thread `tid` of this process still there?
    private static func threadExists(_ tid: Int32) -> Bool {
        access("/proc/self/task/\(tid)", F_OK) == 0
    }

    /// The threads start together, and `startIOThreads` returns once every one
    /// has run `onStart` (the VMM loads the thread's seccomp filter there, and
    /// lets the guest run after); if one `onStart` throws, the error comes back
    /// and no thread is left running.
    @Test func startReturnsOnceEveryThreadRanOnStartAndAFailureStopsThemAll() throws {
        let dir = try TempDir()
        try RawImage.create(path: dir.file("d"), size: 1 << 20)
        let engine = try AsyncDiskEngine(image: try DiskImageOpener.open(path: dir.file("d"), format: .raw),
                                         queueDepth: 8, ioThreads: 4)
        let lock = NSLock()
        nonisolated(unsafe) var tids: [Int32] = []
        try engine.startIOThreads {
            usleep(20_000)  // a slow start: `startIOThreads` must still wait for it
            lock.withLock { tids.append(ckvm_gettid()) }
        }
        let started = lock.withLock { tids }
        #expect(started.count == 4)
        #expect(started.allSatisfy(Self.threadExists))
        engine.stopIOThreads()
        #expect(!started.contains(where: Self.threadExists))

        try RawImage.create(path: dir.file("e"), size: 1 << 20)
        let failing = try AsyncDiskEngine(image: try DiskImageOpener.open(path: dir.file("e"), format: .raw),
                                          queueDepth: 8, ioThreads: 4)
        nonisolated(unsafe) var attempted: [Int32] = []
        #expect(throws: StorageError.self) {
            try failing.startIOThreads {
                let n = lock.withLock { attempted.append(ckvm_gettid()); return attempted.count }
                if n == 3 { throw StorageError(.io, "refused on start", errno: EPERM) }
            }
        }
        let all = lock.withLock { attempted }
        #expect(all.count == 4)
        #expect(!all.contains(where: Self.threadExists))
    }

    @Test func completionsRunOnTheIOThreadsWhenTheLockIsFree() throws {
        let dir = TempDir()
        let (engine, lock) = try Self.makeEngine(dir)
        // A patient hand-over: it waits for the lock rather than trying it once, so
        // that a transfer ending while the submitter still holds the lock (on a busy
        // host the woken I/O thread can run before the submitter unlocks, every
        // time) is completed on the I/O thread too, as soon as the lock is free.
        engine.completeOnIOThreads { body in
            guard lock.lock(before: Date().addingTimeInterval(10)) else { return false }
            defer { lock.unlock() }
            body()
            return true
        }
        let tally = Tally()
        let size = 16384
        let count = 40
        let buffers = (0 ..< count).map { _ in try! AlignedBuffer(count: size) }
        for i in 0 ..< count {
            let data = pattern(size, seed: UInt64(i))
            data.withUnsafeBytes { buffers[i].bytes.copyMemory(from: $0) }
            // One at a time; the owner takes the lock again only for the eventfd,
            // which nothing writes while the hand-over succeeds.
            lock.lock()
            engine.submit(.write(offset: UInt64(i * size), buffers: [UnsafeRawBufferPointer(buffers[i].bytes)])) { tally.record($0) }
            lock.unlock()
            #expect(Self.serve(engine, lock, tally, until: i + 1), "write \(i) never completed")
        }
        let afterWrites = tally.counts
        #expect(afterWrites.done == count && afterWrites.failures == 0)
        // Every one completed on an I/O thread.
        #expect(afterWrites.offOwner == count)
        let readBack = (0 ..< count).map { _ in try! AlignedBuffer(count: size) }
        lock.lock()
        for i in 0 ..< count {
            engine.submit(.read(offset: UInt64(i * size), buffers: [readBack[i].bytes])) { tally.record($0) }
        }
        lock.unlock()
        // Hand-overs that met the lock while we held it waited for it.
        #expect(Self.serve(engine, lock, tally, until: 2 * count))
        let c = tally.counts
        #expect(c.done == 2 * count && c.failures == 0)
        lock.lock()
        #expect(engine.outstanding == 0)
        lock.unlock()
        for i in 0 ..< count { #expect(Array(readBack[i].bytes) == pattern(size, seed: UInt64(i))) }
    }

    @Test func aBusyLockFallsBackToTheEventFD() throws {
        let dir = TempDir()
        let (engine, lock) = try Self.makeEngine(dir)
        let tally = Tally()
        let buffer = try AlignedBuffer(count: 4096)
        lock.lock()
        defer { lock.unlock() }
        engine.submit(.read(offset: 4096, buffers: [buffer.bytes])) { tally.record($0) }
        var pfd = pollfd(fd: engine.completionFD, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pfd, 1, 10_000) == 1, "the I/O thread did not fall back to the eventfd")
        #expect(tally.counts.done == 0)  // it could not take the lock, so it ran nothing
        engine.processCompletions()
        let c = tally.counts
        #expect(c.done == 1 && c.offOwner == 0 && c.failures == 0)
        #expect(engine.outstanding == 0)
    }

    /// A flush submitted by a completion on the only I/O thread would wait for
    /// that thread: it must go to the owner (eventfd), not deadlock.
    @Test func requestsSubmittedOnAnIOThreadStartOnTheOwner() throws {
        // A fresh engine per round: in about one run in ten on a quiet host, one
        // engine's write never completed on its I/O thread in 50 tries.
        var shown = false
        for _ in 0 ..< 10 where !shown {
            shown = try Self.flushFromAnIOThreadCompletion()
        }
        #expect(shown, "no write completed on the I/O thread in 10 engines × 50 tries")
    }

    private static func flushFromAnIOThreadCompletion() throws -> Bool {
        let dir = TempDir()
        let (engine, lock) = try Self.makeEngine(dir, threads: 1)
        defer { engine.stopIOThreads() }
        // 1 MiB: its copy takes far longer than the moment the lock stays held after
        // submit (with 4 KiB a quiet host's I/O thread often finished inside it).
        let buffer = try AlignedBuffer(count: 1 << 20)
        pattern(1 << 20, seed: 7).withUnsafeBytes { buffer.bytes.copyMemory(from: $0) }
        let owner = pthread_self()
        // The write's completion runs on the I/O thread unless its transfer ended in
        // the instant we held the lock to submit; try until it did (nearly always at once).
        var shown = false
        for _ in 0 ..< 50 where !shown {
            let tally = Tally()
            let writeOnIOThread = NSLock()
            var onIOThread = false
            lock.lock()
            engine.submit(.write(offset: 0, buffers: [UnsafeRawBufferPointer(buffer.bytes)])) { result in
                writeOnIOThread.lock(); onIOThread = pthread_equal(pthread_self(), owner) == 0; writeOnIOThread.unlock()
                tally.record(result)
                engine.submit(.flush) { tally.record($0) }
            }
            lock.unlock()
            #expect(Self.serve(engine, lock, tally, until: 2), "write + flush did not complete (deadlock?)")
            writeOnIOThread.lock(); let off = onIOThread; writeOnIOThread.unlock()
            let c = tally.counts
            #expect(c.done == 2 && c.failures == 0)
            if off {
                #expect(c.offOwner == 1)  // the write's; the flush ran here, on the owner
                shown = true
            }
        }
        lock.lock()
        #expect(engine.outstanding == 0)
        lock.unlock()
        return shown
    }

    /// A batch queues its transfers at its end, but a flush inside it still waits
    /// for (and covers) the writes before it.
    @Test(arguments: [false, true]) func batchesKeepFlushOrdering(ioThreadCompletions: Bool) throws {
        let dir = TempDir()
        let (engine, lock) = try Self.makeEngine(dir)
        if !ioThreadCompletions { engine.completeOnIOThreads(nil) }
        let size = 8192
        let count = 16
        let buffers = (0 ..< count).map { i in
            let b = try! AlignedBuffer(count: size)
            pattern(size, seed: UInt64(100 + i)).withUnsafeBytes { b.bytes.copyMemory(from: $0) }
            return b
        }
        let readBack = (0 ..< count).map { _ in try! AlignedBuffer(count: size) }
        let order = NSLock()
        var events: [String] = []
        func note(_ s: String) { order.lock(); events.append(s); order.unlock() }
        lock.lock()
        engine.batch {
            for i in 0 ..< count {
                engine.submit(.write(offset: UInt64(i * size), buffers: [UnsafeRawBufferPointer(buffers[i].bytes)])) {
                    note((try? $0.get()) == size ? "w" : "w-failed")
                }
            }
            engine.submit(.flush) { note((try? $0.get()) == 0 ? "f" : "f-failed") }
            for i in 0 ..< count {
                engine.submit(.read(offset: UInt64(i * size), buffers: [readBack[i].bytes])) {
                    note((try? $0.get()) == size ? "r" : "r-failed")
                }
            }
        }
        engine.drain()
        lock.unlock()
        order.lock(); let seen = events; order.unlock()
        #expect(seen.count == 2 * count + 1)
        // Every write completed before the flush did; the reads came after it.
        #expect(seen.prefix(count + 1) == ArraySlice(Array(repeating: "w", count: count) + ["f"]))
        #expect(seen.suffix(count).allSatisfy { $0 == "r" })
        for i in 0 ..< count { #expect(Array(readBack[i].bytes) == pattern(size, seed: UInt64(100 + i))) }
    }

    /// Small reads the page cache holds run on the submitting thread (RWF_NOWAIT), but
    /// their completions still wait for the end of the batch (or the eventfd), never
    /// running inside `submit`. Writes always go to the I/O threads.
    @Test func smallCachedReadsRunInlineAndCompleteAfterTheBatch() throws {
        let dir = TempDir()
        let (engine, lock) = try Self.makeEngine(dir, inlineBytes: 8192)
        let tally = Tally()
        let data = pattern(8192, seed: 3)
        let small = try AlignedBuffer(count: 8192)
        let large = try AlignedBuffer(count: 16384)
        data.withUnsafeBytes { small.bytes.copyMemory(from: $0) }
        lock.lock()
        defer { lock.unlock() }
        var pfd = pollfd(fd: engine.completionFD, events: Int16(POLLIN), revents: 0)
        // A small write: not inline (a buffered write may wait for writeback); an I/O
        // thread moves it and, with the lock held here, the eventfd brings it back.
        engine.batch {
            engine.submit(.write(offset: 0, buffers: [UnsafeRawBufferPointer(small.bytes)])) { tally.record($0) }
        }
        #expect(poll(&pfd, 1, 10_000) == 1)
        engine.processCompletions()
        engine.drain()
        #expect(tally.counts.done == 1 && tally.counts.failures == 0)
        // The written pages are cached now: a small read of them runs inline, complete
        // when the batch ended, on this thread, no I/O thread involved. (RWF_NOWAIT may
        // still say EAGAIN now and then; the read then goes to a thread: try again.)
        let readBack = try AlignedBuffer(count: 8192)
        var inline = false
        for _ in 0 ..< 20 where !inline {
            let before = tally.counts.done
            engine.batch {
                engine.submit(.read(offset: 0, buffers: [readBack.bytes])) { tally.record($0) }
                #expect(tally.counts.done == before)  // not from inside submit
            }
            inline = tally.counts.done == before + 1
            if !inline {
                #expect(poll(&pfd, 1, 10_000) == 1)
                engine.processCompletions()
                engine.drain()
            }
        }
        #expect(inline, "a cached 8 KiB read never ran inline in 20 tries")
        #expect(tally.counts.offOwner == 0)
        #expect(Array(readBack.bytes) == data)
        // Outside a batch the eventfd brings the completion, as for any request.
        let again = try AlignedBuffer(count: 8192)
        let beforeAgain = tally.counts.done
        engine.submit(.read(offset: 0, buffers: [again.bytes])) { tally.record($0) }
        #expect(tally.counts.done == beforeAgain)
        #expect(poll(&pfd, 1, 10_000) == 1)
        engine.processCompletions()
        engine.drain()
        #expect(tally.counts.done == beforeAgain + 1)
        #expect(Array(again.bytes) == data)
        // Not in the page cache (written back, then dropped): never read inline, where it
        // would wait for the disk; an I/O thread reads it. (DONTNEED may miss pages still
        // in another CPU's LRU batch: retry until mincore says they are gone. On a busy
        // host something may bring them back before the read: then it is rightly inline;
        // evict and try again.)
        let cold = try AlignedBuffer(count: 8192)
        var wentToThread = false
        for _ in 0 ..< 10 where !wentToThread {
            try Self.evict(dir.file("d"), bytes: 8192)
            let before = tally.counts.done
            engine.batch {
                engine.submit(.read(offset: 0, buffers: [cold.bytes])) { tally.record($0) }
            }
            wentToThread = tally.counts.done == before  // not finished at the batch's end
            if wentToThread {
                #expect(poll(&pfd, 1, 10_000) == 1)
                engine.processCompletions()
                engine.drain()
                #expect(tally.counts.done == before + 1)
            }
            #expect(Array(cold.bytes) == data)
        }
        // Not always shown on a loaded host: the RWF_NOWAIT read starts read-ahead, and if
        // its thread is preempted until that I/O has finished, the pages are there and the
        // copy rightly runs inline. Reported, not failed, when that happens every time.
        withKnownIssue("the evicted pages came back before every read (busy host)", isIntermittent: true) {
            #expect(wentToThread, "an evicted read ran inline in 10 tries")
        }
        let beforeLarge = tally.counts.done
        // Larger than the limit: an I/O thread moves it (lock held: the eventfd brings it back).
        engine.submit(.read(offset: 0, buffers: [large.bytes])) { tally.record($0) }
        #expect(poll(&pfd, 1, 10_000) == 1)
        engine.processCompletions()
        engine.drain()
        let c = tally.counts
        #expect(c.done == beforeLarge + 1 && c.failures == 0)
        #expect(Array(large.bytes.prefix(8192)) == data)
        // An inline read past the end of the disk is refused, typed, like any other.
        var failure: StorageError?
        engine.batch {
            engine.submit(.read(offset: engine.image.virtualSize - 4096, buffers: [small.bytes])) {
                if case .failure(let e) = $0 { failure = e }
            }
        }
        #expect(failure?.kind == .outOfBounds)
    }
}
