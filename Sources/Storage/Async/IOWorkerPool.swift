import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// The threads that move a disk's data for `AsyncDiskEngine`: `preadv`/`pwritev`
/// between an image file and the caller's buffers (guest RAM for virtio-blk).
///
/// Why threads and not libaio: on a buffered file `io_submit` does the page-cache
/// copy itself, on the submitting thread, so one event loop ended up doing every
/// copy of every disk. Here the submitter only queues a job; a worker does the
/// copy and queues the result. Then the worker whose result went into an empty
/// queue hands the results over: through `onResults` when the owner set one (the
/// engine completes the requests right there, on the worker, under the owner's
/// lock, if that lock is free at once), otherwise — or when the lock was busy —
/// by writing the engine's eventfd, whose owner reaps on its own thread. Either
/// way one hand-over covers every transfer finished meanwhile.
///
/// Sound because: `jobs`, `results`, `waiters`, `idle`, `onResults` and `stopping`
/// are touched only with `mutex` held; the job's iovec array belongs to the job
/// until its result is queued (the engine does not read or reuse it before).
final class IOWorkerPool: @unchecked Sendable {
    struct Job {
        let fd: Int32
        let offset: Int64
        let iovecs: UnsafeMutablePointer<iovec>
        let count: Int
        let write: Bool
        let tag: Int
    }

    /// `result`: bytes moved, or -errno.
    struct Result {
        let tag: Int
        let result: Int
    }

    let threadCount: Int
    private let notifyFD: Int32
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let jobReady = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let resultReady = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [Job] = []
    private var jobHead = 0
    private var results: [Result] = []
    private var waiters = 0
    /// Workers waiting for a job: a busy worker looks at the queue before it
    /// waits, so a job queued while none is idle needs no wake-up (no futex call).
    private var idle = 0
    private var stopping = false
    private var threads: [pthread_t] = []
    /// Called (without `mutex`) by the worker whose result went into an empty
    /// queue; true when it took the results, false to have the eventfd written.
    private var onResults: (@Sendable () -> Bool)?

    /// - Parameter notifyFD: an eventfd written (8 bytes, value 1) when results are waiting.
    init(threads: Int, notifyFD: Int32) {
        threadCount = max(1, threads)
        self.notifyFD = notifyFD
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(jobReady, nil)
        pthread_cond_init(resultReady, nil)
        jobs.reserveCapacity(256)
        results.reserveCapacity(256)
    }

    deinit {
        stop()
        pthread_cond_destroy(resultReady)
        pthread_cond_destroy(jobReady)
        pthread_mutex_destroy(mutex)
        resultReady.deallocate()
        jobReady.deallocate()
        mutex.deallocate()
    }

    var isStarted: Bool { !threads.isEmpty }

    /// Starts the threads (once; later calls do nothing). Each runs `onStart` first
    /// (the VMM loads the thread's seccomp filter there); if it throws, no thread is
    /// left running and the error is rethrown.
    func start(onStart: (@Sendable () throws -> Void)? = nil) throws {
        guard threads.isEmpty else { return }
        // All threads are created first and then waited for: each start (a clone and a
        // seccomp filter load, ~0.5 ms here) overlaps the others, and the VM's start waits for them.
        var boxes: [StartBox] = []
        for index in 0 ..< threadCount {
            let box = StartBox(pool: self, index: index, onStart: onStart)
            var attr = pthread_attr_t()
            pthread_attr_init(&attr)
            defer { pthread_attr_destroy(&attr) }
            // The workers run only the copy loop: a small stack keeps their memory small.
            pthread_attr_setstacksize(&attr, 256 * 1024)
            var thread = pthread_t()
            let rc = pthread_create(&thread, &attr, { raw in
                let box = Unmanaged<StartBox>.fromOpaque(raw!).takeRetainedValue()
                box.run()
                return nil
            }, Unmanaged.passRetained(box).toOpaque())
            guard rc == 0 else {
                stop()
                throw StorageError(.io, "starting disk I/O thread: \(String(cString: strerror(rc)))", errno: rc)
            }
            threads.append(thread)
            boxes.append(box)
        }
        for box in boxes { box.started.wait() }
        if let error = boxes.lazy.compactMap(\.startError).first {
            stop()
            throw error
        }
    }

    /// Ends and joins the threads once the queued jobs are done.
    func stop() {
        guard !threads.isEmpty else { return }
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(jobReady)
        pthread_mutex_unlock(mutex)
        for t in threads { pthread_join(t, nil) }
        threads.removeAll()
        pthread_mutex_lock(mutex)
        stopping = false
        pthread_mutex_unlock(mutex)
    }

    /// Sets (or clears) the result hand-over that runs on the workers (see above).
    func setOnResults(_ handler: (@Sendable () -> Bool)?) {
        pthread_mutex_lock(mutex)
        onResults = handler
        pthread_mutex_unlock(mutex)
    }

    /// Queues jobs for the workers, waking at most one idle worker per job (a
    /// busy worker looks at the queue before it sleeps, so it needs no wake-up).
    func enqueue(_ newJobs: UnsafeBufferPointer<Job>) {
        guard !newJobs.isEmpty else { return }
        pthread_mutex_lock(mutex)
        if jobHead > 0 && jobHead == jobs.count { jobs.removeAll(keepingCapacity: true); jobHead = 0 }
        jobs.append(contentsOf: newJobs)
        for _ in 0 ..< min(idle, newJobs.count) { pthread_cond_signal(jobReady) }
        pthread_mutex_unlock(mutex)
    }

    /// Takes the finished results; with `wait`, blocks until there is at least one.
    func takeResults(wait: Bool) -> [Result] {
        pthread_mutex_lock(mutex)
        while wait && results.isEmpty {
            waiters += 1
            pthread_cond_wait(resultReady, mutex)
            waiters -= 1
        }
        var taken: [Result] = []
        taken.reserveCapacity(results.count)
        swap(&taken, &results)
        pthread_mutex_unlock(mutex)
        return taken
    }

    // MARK: - Worker side

    private func workerLoop() {
        pthread_mutex_lock(mutex)
        while true {
            while jobHead == jobs.count && !stopping {
                idle += 1
                pthread_cond_wait(jobReady, mutex)
                idle -= 1
            }
            if jobHead == jobs.count { break }  // stopping, nothing left
            let job = jobs[jobHead]
            jobHead += 1
            pthread_mutex_unlock(mutex)
            let moved = Self.transfer(job)
            pthread_mutex_lock(mutex)
            let wasEmpty = results.isEmpty
            results.append(Result(tag: job.tag, result: moved))
            if waiters > 0 { pthread_cond_broadcast(resultReady) }
            // Only the first result into an empty queue hands over: whoever takes the
            // results takes the later ones too (they were queued before the take).
            guard wasEmpty else { continue }
            if let handler = onResults {
                pthread_mutex_unlock(mutex)
                let taken = handler()
                if !taken { Self.notify(notifyFD) }
                pthread_mutex_lock(mutex)
            } else {
                // Outside the lock would do too; inside keeps the owner's wake-ups in order.
                Self.notify(notifyFD)
            }
        }
        pthread_mutex_unlock(mutex)
    }

    private static func notify(_ fd: Int32) {
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }

    /// Moves all of a job's bytes (the kernel may stop short); a read past the end
    /// of the file fills the rest with zeroes (a sparse tail). Bytes moved or -errno.
    static func transfer(_ job: Job) -> Int {
        var iov = job.iovecs
        var count = job.count
        var offset = job.offset
        var total = 0
        while count > 0 {
            if iov.pointee.iov_len == 0 { iov += 1; count -= 1; continue }
            let n = job.write ? pwritev(job.fd, iov, Int32(count), off_t(offset))
                              : preadv(job.fd, iov, Int32(count), off_t(offset))
            if n < 0 {
                if errno == EINTR { continue }
                return -Int(errno)
            }
            if n == 0 {
                if job.write { return -Int(EIO) }
                for i in 0 ..< count { memset(iov[i].iov_base, 0, iov[i].iov_len); total += iov[i].iov_len }
                return total
            }
            total += n
            offset += Int64(n)
            var left = n
            while left > 0 {
                if left >= iov.pointee.iov_len {
                    left -= iov.pointee.iov_len
                    iov += 1
                    count -= 1
                } else {
                    iov.pointee.iov_base = iov.pointee.iov_base! + left
                    iov.pointee.iov_len -= left
                    left = 0
                }
            }
        }
        return total
    }

    /// What a new thread needs, and how it reports that it is ready.
    private final class StartBox {
        let pool: IOWorkerPool
        let index: Int
        let onStart: (@Sendable () throws -> Void)?
        let started = Semaphore()
        var startError: Error?

        init(pool: IOWorkerPool, index: Int, onStart: (@Sendable () throws -> Void)?) {
            self.pool = pool
            self.index = index
            self.onStart = onStart
        }

        func run() {
            _ = ckvm_set_thread_name("skiff-disk-io")
            do {
                try onStart?()
            } catch {
                startError = error
                started.signal()
                return
            }
            started.signal()
            pool.workerLoop()
        }
    }

    /// A one-shot wake-up (the thread start hand-shake).
    private final class Semaphore {
        private let sem = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
        init() { sem_init(sem, 0, 0) }
        deinit { sem_destroy(sem); sem.deallocate() }
        func wait() { while sem_wait(sem) != 0 && errno == EINTR {} }
        func signal() { sem_post(sem) }
    }
}
