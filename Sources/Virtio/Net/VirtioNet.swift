import CKVM
import GuestMemory
import Network
#if canImport(Glibc)
import Glibc
#endif

/// virtio-net (device ID 1, virtio 1.2 §5.1) over a TAP opened with IFF_VNET_HDR:
/// queue 0 receives (TAP → guest), queue 1 transmits (guest → TAP), queue 2 is
/// the control queue (`VirtioNet+Control.swift`: the announce command). The 12-byte
/// virtio_net_hdr_v1 passes through unchanged, so checksum and TSO offloads cost
/// nothing here; the TAP is told (TUNSETOFFLOAD) which ones the guest accepted.
///
/// Transmitted frames go straight from guest buffers to the TAP (`writev` over the
/// chains' iovecs, `VirtioNet+Transmit.swift`); received ones are read into a
/// staging buffer and copied while they are small, and `readv`ed straight into
/// the chains when large (`VirtioNet+Receive.swift`). Many frames per wake-up,
/// with one used.idx update and at most one interrupt per batch.
///
/// Back-pressure: when the receive queue has no buffers, the TAP is no longer
/// polled and the device waits for the driver's next receive-queue notification;
/// a frame larger than the buffers at hand is kept (staged) until enough come.
/// No frame is read that cannot be placed.
// Sound because: its mutable state is touched only in device callbacks and `watch` handlers, all run with the transport's device lock held.
public final class VirtioNet: VirtioDevice, @unchecked Sendable {
    /// Feature bits (§5.1.3).
    public enum Feature {
        public static let csum: UInt64 = 1 << 0
        public static let guestCsum: UInt64 = 1 << 1
        public static let mac: UInt64 = 1 << 5
        public static let guestTSO4: UInt64 = 1 << 7
        public static let guestTSO6: UInt64 = 1 << 8
        public static let guestECN: UInt64 = 1 << 9
        public static let hostTSO4: UInt64 = 1 << 11
        public static let hostTSO6: UInt64 = 1 << 12
        public static let hostECN: UInt64 = 1 << 13
        public static let mergeableRxBuffers: UInt64 = 1 << 15
        public static let status: UInt64 = 1 << 16
        public static let controlQueue: UInt64 = 1 << 17
        /// The driver sends gratuitous packets when asked (§5.1.6.5.3); needs the control queue.
        public static let guestAnnounce: UInt64 = 1 << 21
    }
    /// Bits of the config space `status` field.
    public enum Status {
        public static let linkUp: UInt16 = 1
        public static let announce: UInt16 = 2
    }
    static let rxQueue = 0
    static let txQueue = 1
    static let controlQueue = 2
    /// QueueNumMax of the control queue: one command at a time is all Linux sends.
    public static let controlQueueSize: UInt16 = 64
    /// Frames handled per event-loop wake-up before yielding to other devices.
    static let batch = 256
    /// Used elements added before used.idx is published mid-batch, so a polling
    /// driver can recycle buffers while a long batch goes on.
    static let publishEvery = 32
    /// iovecs per readv/writev (the kernel's IOV_MAX).
    static let maxIovecs = 1024
    /// Largest frame a TAP hands us: a 64 KiB GSO packet plus Ethernet and vnet headers.
    static let maxFrame = 65_536 + 256
    /// While received frames are no longer than this, each is `read` into `frame`
    /// and copied into the guest's chains rather than `readv`ed straight into them:
    /// the kernel's copy into guest buffers that have left this core's cache costs
    /// more than its copy into the cache-hot staging buffer plus ours out of it
    /// (docs/virtio.md, "Receive: small frames through the staging buffer").
    /// `rxLastLength` decides, so a wrong guess costs a copy, never a frame.
    static let bounceLimit = 4096

    public let deviceType = VirtioDeviceType.net
    public let queueMaxSizes: [UInt16]
    public let tap: Tap
    public let mac: MACAddress
    static let baseFeatures: UInt64 = Feature.csum | Feature.guestCsum | Feature.mac
        | Feature.guestTSO4 | Feature.guestTSO6 | Feature.guestECN
        | Feature.hostTSO4 | Feature.hostTSO6 | Feature.hostECN
        | Feature.mergeableRxBuffers | Feature.status
    public var deviceFeatures: UInt64 {
        offersControlQueue ? Self.baseFeatures | Feature.controlQueue | Feature.guestAnnounce : Self.baseFeatures
    }
    /// False for a card restored from state saved before the control queue existed:
    /// it keeps offering the feature set its driver negotiated with (set under the
    /// transport's lock, before the restore).
    public var offersControlQueue = true

    var context: VirtioDeviceContext?
    /// Staging buffer: where small received frames are read, the tail of every
    /// receive readv (what does not fit the chains popped for it), and a frame
    /// waiting for more receive buffers.
    // SAFETY: owned by this device, freed in deinit, only touched under the device lock.
    let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: VirtioNet.maxFrame, alignment: 16)
    /// Length of the frame waiting in `frame`, if any.
    var frameLength: Int?
    var tapPaused = false
    /// iovecs for readv/writev, reused (no allocation per frame).
    // SAFETY: as `frame`.
    let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: VirtioNet.maxIovecs)
    /// Transmit's io_uring (several frames per system call); nil where the host
    /// refuses one, or after it failed: then one `writev` per frame.
    var txRing: TapWriteRing?
    /// Transmit chains whose frames wait in `txRing` for the next submit, in order.
    var txPending: [PendingFrame] = []
    /// Receive chains popped ahead of the frame that will fill them; always the
    /// last ones popped, and given back (undoPop) before a receive wake-up ends.
    var rxAhead: [DescriptorChain] = []
    var rxAheadStart = 0
    /// Length of the last frame received: how much buffer space to pop ahead with
    /// mergeable buffers (a larger frame goes through `frame`).
    var rxLastLength = 1514 + 12

    /// Counters, for tests and metrics (read them on the event loop or after it stopped).
    public internal(set) var rxFrames = 0
    public internal(set) var txFrames = 0
    public internal(set) var rxDropped = 0
    public internal(set) var txDropped = 0
    /// Frames that needed more buffer space than was popped ahead and were copied
    /// through the staging buffer (mergeable buffers only).
    public internal(set) var rxStaged = 0
    /// Small frames read into the staging buffer and copied into the chains popped
    /// for them (see `bounceLimit`); the rest of the frames placed were read
    /// straight into guest buffers or staged.
    public internal(set) var rxCopied = 0
    /// True while the TAP is not polled because the guest has no receive buffers.
    public var isReceivePaused: Bool { tapPaused }
    /// VIRTIO_NET_S_ANNOUNCE: set by `requestAnnounce()`, cleared by the driver's
    /// ANNOUNCE_ACK or a reset. Part of the device's migration state.
    public internal(set) var isAnnouncePending = false
    /// Announce requests raised and acknowledged since the device was created.
    public internal(set) var announceRequests = 0
    public internal(set) var announceAcks = 0
    /// Control-queue commands answered VIRTIO_NET_ERR (unknown or malformed).
    public internal(set) var controlErrors = 0

    /// - Parameter batchedTransmit: send frames through a `TapWriteRing` where the
    ///   host allows one (false: one `writev` per frame, as where it does not).
    public init(tap: Tap, mac: MACAddress, queueSize: UInt16 = 256, batchedTransmit: Bool = true) {
        self.tap = tap
        self.mac = mac
        queueMaxSizes = [queueSize, queueSize, Self.controlQueueSize]
        rxAhead.reserveCapacity(Int(queueSize))
        txRing = batchedTransmit ? try? TapWriteRing(fileDescriptor: tap.fileDescriptor) : nil
        txPending.reserveCapacity(TapWriteRing.capacity)
    }

    /// Whether transmit sends several frames per system call (see `txRing`).
    public var transmitsInBatches: Bool { txRing != nil }

    /// Opens (or creates) the TAP named by a `--net` option.
    public convenience init(config: NetDeviceConfig, queueSize: UInt16 = 256) throws {
        try self.init(tap: Tap(name: config.tap), mac: config.mac ?? .random(), queueSize: queueSize)
    }

    deinit {
        frame.deallocate()
        iovecs.deallocate()
    }

    /// struct virtio_net_config: mac, status (LINK_UP, ANNOUNCE), max_virtqueue_pairs.
    var configBytes: [UInt8] {
        let status = Status.linkUp | (isAnnouncePending ? Status.announce : 0)
        return mac.bytes + [UInt8(status & 0xff), UInt8(status >> 8), 1, 0]
    }

    public func readConfig(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        Self.copyConfig(configBytes, offset: offset, into: data)
    }

    public func writeConfig(offset: Int, data: UnsafeRawBufferPointer) {} // MAC is read-only in virtio 1.x

    /// §5.1.3.1: GUEST_ANNOUNCE depends on CTRL_VQ.
    public func acceptsFeatures(_ features: UInt64) -> Bool {
        features & Feature.guestAnnounce == 0 || features & Feature.controlQueue != 0
    }

    public func activate(_ context: VirtioDeviceContext) throws {
        var offloads: UInt32 = 0
        if context.hasFeature(Feature.guestCsum) {
            offloads |= Tap.Offload.checksum
            if context.hasFeature(Feature.guestTSO4) { offloads |= Tap.Offload.tso4 }
            if context.hasFeature(Feature.guestTSO6) { offloads |= Tap.Offload.tso6 }
            if context.hasFeature(Feature.guestECN), offloads & (Tap.Offload.tso4 | Tap.Offload.tso6) != 0 { offloads |= Tap.Offload.tsoECN }
        }
        try tap.setOffloads(offloads)
        self.context = context
        frameLength = nil
        tapPaused = false
        // A driver that never set up the receive queue gets no frames (and no error).
        guard context.queues[Self.rxQueue].isReady else { return }
        try context.watch(tap.fileDescriptor) { [unowned self] _ in self.receive() }
    }

    public func reset() {
        context = nil
        frameLength = nil // a frame in hand is dropped with the queues it was meant for
        tapPaused = false
        rxAhead.removeAll(keepingCapacity: true) // empty between wake-ups anyway
        rxAheadStart = 0
        isAnnouncePending = false
    }

    public func queueNotified(_ index: Int) {
        switch index {
        case Self.rxQueue: receive() // new receive buffers: resume if we were waiting for them
        case Self.txQueue: transmit()
        case Self.controlQueue: processControlQueue()
        default: break
        }
    }
}
