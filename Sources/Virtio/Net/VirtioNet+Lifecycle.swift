extension VirtioNet {
    /// Nothing in flight: transmit and receive each finish within their handler,
    /// and the paused event loop takes no new frames from the TAP.
    public func quiesce() {}

    /// Nothing to make durable: frames still in the TAP or the rings are dropped,
    /// as on a link that goes down. The TAP closes when the device is released.
    public func shutdown() throws {}
}
