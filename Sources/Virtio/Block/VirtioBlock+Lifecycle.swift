import Storage

extension VirtioBlock {
    /// Starts the disk's I/O threads; each runs `onStart` first (its seccomp
    /// filter). The VMM calls it before the guest runs, from a thread still
    /// allowed to create threads; otherwise they start at the first transfer.
    public func startIOThreads(onStart: (@Sendable () throws -> Void)? = nil) throws {
        try engine.startIOThreads(onStart: onStart)
    }

    /// Completes the requests in flight (used ring updated, interrupt raised —
    /// the guest sees it when it resumes).
    public func quiesce() {
        engine.drain()
        signalIfCompleted()
    }

    /// Completes the requests in flight and makes every completed write
    /// durable (qcow2: the cached metadata too), leaving the image open.
    public func flush() throws {
        engine.drain()
        signalIfCompleted()
        try image.flush()
    }

    /// Completes the requests in flight, then flushes and closes the image: for
    /// qcow2 that writes the cached L2 tables and refcounts, without which data
    /// written since the guest's last FLUSH would be unreachable in the file.
    public func shutdown() throws {
        engine.stopIOThreads()
        try image.close()
    }
}
