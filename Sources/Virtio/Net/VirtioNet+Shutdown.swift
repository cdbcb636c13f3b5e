extension VirtioNet {
    /// Nothing to make durable: frames still in the TAP or the rings are dropped,
    /// as on a link that goes down. The TAP closes when the device is released.
    public func shutdown() throws {}
}
