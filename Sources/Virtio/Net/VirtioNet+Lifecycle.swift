extension VirtioNet {
    /// Nothing in flight: transmit and receive each finish within their handler,
    /// and the paused event loop takes no new frames from the TAP.
    public func quiesce() {}

    /// Nothing to make durable: frames still in the TAP or the rings are dropped,
    /// as on a link that goes down. The TAP is closed here, not when the device is
    /// released: a VM rebuilt in this process (`vm.reboot`) opens it again while
    /// the old machine is still referenced, and a TAP takes one descriptor at a time.
    public func shutdown() throws {
        txRing = nil
        tap.close()
    }
}
