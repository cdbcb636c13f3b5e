import Storage

extension VirtioBlock {
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
        engine.drain()
        try image.close()
    }
}
