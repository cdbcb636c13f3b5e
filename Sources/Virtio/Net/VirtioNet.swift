import CKVM
import Foundation
import GuestMemory
import Network

/// virtio-net (device ID 1, virtio 1.2 §5.1) over a TAP opened with IFF_VNET_HDR:
/// queue 0 receives (TAP → guest), queue 1 transmits (guest → TAP), queue 2 is
/// the control queue (`VirtioNet+Control.swift`: the announce command). The 12-byte
/// virtio_net_hdr_v1 passes through unchanged, so checksum and TSO offloads cost
/// nothing here; the TAP is told (TUNSETOFFLOAD) which ones the guest accepted.
///
/// Back-pressure: when the receive queue has too few buffers for the frame in hand,
/// the frame is kept, the TAP is no longer polled, and the device waits for the
/// driver's next receive-queue notification. No frame is read that cannot be placed.
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
    /// Largest frame a TAP hands us: a 64 KiB GSO packet plus Ethernet and vnet headers.
    static let maxFrame = 65_536 + 256

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
    /// A frame read from the TAP that is waiting for receive buffers.
    // SAFETY: owned by this device, freed in deinit, only touched under the device lock.
    private let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: VirtioNet.maxFrame, alignment: 16)
    private var frameLength: Int?
    private var tapPaused = false

    /// Counters, for tests and metrics (read them on the event loop or after it stopped).
    public private(set) var rxFrames = 0
    public private(set) var txFrames = 0
    public private(set) var rxDropped = 0
    public private(set) var txDropped = 0
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

    public init(tap: Tap, mac: MACAddress, queueSize: UInt16 = 256) {
        self.tap = tap
        self.mac = mac
        queueMaxSizes = [queueSize, queueSize, Self.controlQueueSize]
    }

    /// Opens (or creates) the TAP named by a `--net` option.
    public convenience init(config: NetDeviceConfig, queueSize: UInt16 = 256) throws {
        try self.init(tap: Tap(name: config.tap), mac: config.mac ?? .random(), queueSize: queueSize)
    }

    deinit { frame.deallocate() }

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

    // MARK: - Receive (TAP → guest)

    private enum Placement { case placed, noBuffers, dropped }

    private func receive() {
        guard let context, !context.isBroken, context.queues[Self.rxQueue].isReady else { return }
        var placedAny = false
        defer { if placedAny { context.signalUsed(queue: Self.rxQueue) } }
        do {
            for _ in 0..<Self.batch {
                if frameLength == nil {
                    guard let n = try tap.read(into: frame) else { break }
                    guard n > Tap.vnetHeaderSize else { rxDropped += 1; continue }
                    frameLength = n
                }
                let seen = try context.queues[Self.rxQueue].availIndex()
                switch try place(frameLength!, context: context) {
                case .placed:
                    placedAny = true
                    rxFrames += 1
                    frameLength = nil
                case .dropped:
                    rxDropped += 1
                    frameLength = nil
                case .noBuffers:
                    // Ask for a notification when buffers come; if some came meanwhile, retry now.
                    let queue = context.queues[Self.rxQueue]
                    _ = try queue.enableNotification()
                    if try queue.availIndex() != seen { continue }
                    if !tapPaused {
                        tapPaused = true
                        try context.modifyWatch(tap.fileDescriptor, events: 0)
                    }
                    return
                }
            }
            if tapPaused {
                tapPaused = false
                try context.modifyWatch(tap.fileDescriptor, events: UInt32(EPOLLIN.rawValue))
            }
        } catch {
            context.deviceNeedsReset("virtio-net receive: \(error)")
        }
    }

    /// Copies the frame in hand into receive chains: as many as it needs with
    /// mergeable buffers (num_buffers says how many), else exactly one.
    private func place(_ length: Int, context: VirtioDeviceContext) throws -> Placement {
        let queue = context.queues[Self.rxQueue]
        let mergeable = context.hasFeature(Feature.mergeableRxBuffers)
        var chains: [DescriptorChain] = []
        var room: UInt64 = 0
        while room < UInt64(length) {
            // Even the whole ring cannot hold this frame (tiny mergeable buffers): drop it
            // rather than wait for buffers that can never come.
            if chains.count >= Int(queue.size) {
                queue.undoPop(UInt16(chains.count))
                return .dropped
            }
            guard let chain = try queue.popAvailable() else {
                queue.undoPop(UInt16(chains.count))
                return .noBuffers
            }
            // Already taken from the ring and not answerable in order: only a reset helps.
            if let fault = chain.fault { throw fault }
            guard chain.readable.isEmpty, !chain.writable.isEmpty else { throw VirtqueueError.readableAfterWritable }
            chains.append(chain)
            room += chain.writable.totalLength
            if !mergeable { break }
        }
        guard room >= UInt64(length) else {
            // Without mergeable buffers the driver must post buffers for the largest
            // frame it negotiated; this one cannot fit, so it is dropped and the buffer kept.
            queue.undoPop(UInt16(chains.count))
            return .dropped
        }
        frame.storeBytes(of: UInt16(chains.count).littleEndian, toByteOffset: 10, as: UInt16.self) // num_buffers
        var offset = 0
        for chain in chains {
            let n = min(Int(chain.writable.totalLength), length - offset)
            try chain.writable.write(to: context.memory, from: UnsafeRawBufferPointer(rebasing: frame[offset..<(offset + n)]))
            try queue.addUsed(head: chain.head, length: UInt32(n))
            offset += n
        }
        return .placed
    }

    // MARK: - Transmit (guest → TAP)

    private func transmit() {
        guard let context, !context.isBroken, context.queues[Self.txQueue].isReady else { return }
        let queue = context.queues[Self.txQueue]
        var sentAny = false
        do {
            repeat {
                try queue.disableNotification()
                while let chain = try queue.popAvailable() {
                    send(chain, memory: context.memory)
                    try queue.addUsed(head: chain.head, length: 0)
                    sentAny = true
                }
            } while try queue.enableNotification()
        } catch {
            context.deviceNeedsReset("virtio-net transmit: \(error)")
        }
        if sentAny { context.signalUsed(queue: Self.txQueue) }
    }

    /// Writes one frame (vnet header + packet, gathered from the readable buffers).
    /// A malformed chain or a TAP error drops the frame: the guest only learns that
    /// the buffer is free again, as with a real NIC.
    private func send(_ chain: DescriptorChain, memory: GuestMemory) {
        let readable = chain.readable
        guard chain.fault == nil, readable.totalLength > UInt64(Tap.vnetHeaderSize),
              readable.totalLength <= UInt64(Self.maxFrame),
              let buffers = try? readable.hostBuffers(in: memory)
        else { txDropped += 1; return }
        do {
            // SAFETY: checked views of guest RAM, used synchronously by writev.
            try tap.write(buffers.map { UnsafeRawBufferPointer($0) })
            txFrames += 1
        } catch {
            txDropped += 1
        }
    }
}
