import GuestMemory
import Synchronization

/// The device side of a split virtqueue (virtio 1.2 §2.7): takes chains from the
/// avail ring, returns them through the used ring and decides when the driver needs
/// an interrupt. All guest memory goes through `GuestMemory`'s checked accessors.
///
/// Not thread-safe: the transport serialises every use under its device lock.
// Sound because: used only with its transport's device lock held (above); `memory` is Sendable.
public final class SplitQueue: @unchecked Sendable {
    public private(set) var state: QueueState
    public let memory: GuestMemory
    /// Used elements added but not yet published in used.idx (`addUsed(publish: false)`);
    /// never true between device callbacks, so it is not part of `state`.
    private var unpublished = false

    /// A fresh, unconfigured queue.
    public init(maxSize: UInt16, memory: GuestMemory) {
        self.state = QueueState(maxSize: maxSize)
        self.memory = memory
    }

    /// Rebuilds a queue from saved state, validating it against `memory` again:
    /// a snapshot file is as untrusted as the guest.
    public convenience init(state: QueueState, memory: GuestMemory) throws {
        self.init(maxSize: state.maxSize, memory: memory)
        try restore(state)
    }

    /// Replaces the queue's state with saved state, if it is valid for this queue.
    public func restore(_ saved: QueueState) throws {
        guard saved.maxSize == state.maxSize else {
            throw VirtqueueError.invalidSize(saved.maxSize, max: state.maxSize)
        }
        let previous = state
        state = saved
        unpublished = false
        if saved.ready {
            do { try validate() } catch { state = previous; throw error }
        }
    }

    // MARK: - Driver configuration (transport registers)

    public var size: UInt16 { get { state.size } set { state.size = newValue } }
    public var isReady: Bool { get { state.ready } set { state.ready = newValue } }
    public var descriptorTable: UInt64 { get { state.descriptorTable } set { state.descriptorTable = newValue } }
    public var availRing: UInt64 { get { state.availRing } set { state.availRing = newValue } }
    public var usedRing: UInt64 { get { state.usedRing } set { state.usedRing = newValue } }

    /// Back to the state after device reset (§2.1.2 / §4.2.2.1).
    public func reset() {
        state = QueueState(maxSize: state.maxSize)
        unpublished = false
    }

    /// Sets the negotiated ring features before the device starts.
    public func setFeatures(_ features: UInt64) {
        state.eventIdx = features & VirtioFeature.ringEventIdx != 0
        state.indirect = features & VirtioFeature.ringIndirectDesc != 0
    }

    /// Checks what the driver programmed (§2.7): a power-of-two size within the
    /// maximum, aligned rings (16/2/4), every ring byte in guest RAM.
    public func validate() throws {
        let s = state
        guard s.size > 0, s.size <= s.maxSize, s.size & (s.size - 1) == 0 else {
            throw VirtqueueError.invalidSize(s.size, max: s.maxSize)
        }
        let n = UInt64(s.size)
        let rings: [(String, UInt64, UInt64, UInt64)] = [
            ("descriptor table", s.descriptorTable, 16, 16 * n),
            ("avail ring", s.availRing, 2, 6 + 2 * n),   // flags, idx, ring[n], used_event
            ("used ring", s.usedRing, 4, 6 + 8 * n),     // flags, idx, ring[n], avail_event
        ]
        for (name, address, alignment, length) in rings {
            guard address % alignment == 0 else { throw VirtqueueError.misalignedRing(name, address: address) }
            guard memory.containsRange(GuestAddress(address), length: length) else {
                throw VirtqueueError.ringOutsideMemory(name, address: address, length: length)
            }
        }
    }

    // MARK: - Taking and returning chains

    /// The driver's avail.idx: how many chains it has ever made available (mod 2^16).
    public func availIndex() throws -> UInt16 {
        try load16(state.availRing, 2)
    }

    /// How many chains the driver has made available that we have not taken.
    public func pendingCount() throws -> UInt16 {
        let availIdx = try availIndex()
        let pending = availIdx &- state.nextAvail
        guard pending <= state.size else {
            throw VirtqueueError.availIndexJump(availIndex: availIdx, nextAvail: state.nextAvail, size: state.size)
        }
        return pending
    }

    /// Takes the next available chain, or nil when the driver has posted nothing new.
    /// Throws when the ring or the chain's structure is broken: the device must then
    /// stop using the queue and ask for a reset.
    public func popAvailable() throws -> DescriptorChain? {
        guard state.ready, state.size > 0 else { throw VirtqueueError.notReady }
        guard try pendingCount() > 0 else { return nil }
        // Read the ring entry only after seeing avail.idx (§2.7.13.3: driver writes entry, barrier, idx).
        atomicMemoryFence(ordering: .acquiring)
        let slot = UInt64(state.nextAvail % state.size)
        let head = try load16(state.availRing, 4 + 2 * slot)
        state.nextAvail &+= 1
        return try DescriptorChain.parse(head: head, queue: state, memory: memory)
    }

    /// Gives back the last `count` chains taken, which the device could not use yet
    /// (e.g. a received frame needs more buffers than are available).
    public func undoPop(_ count: UInt16) {
        state.nextAvail &-= count
    }

    /// Puts `head` in the used ring with `length` bytes written by the device,
    /// then publishes the new used.idx, unless `publish` is false: a device that
    /// completes a batch publishes once with `publishUsed()` (before it returns
    /// to the event loop, and before `needsNotification`, which does so itself).
    public func addUsed(head: UInt16, length: UInt32, publish: Bool = true) throws {
        guard state.ready, state.size > 0 else { throw VirtqueueError.notReady }
        let slot = UInt64(state.nextUsed % state.size)
        try store(UInt32(head), state.usedRing, 4 + 8 * slot)
        try store(length, state.usedRing, 8 + 8 * slot)
        state.nextUsed &+= 1
        unpublished = true
        if publish { try publishUsed() }
    }

    /// Makes every element added so far visible to the driver (one used.idx store).
    public func publishUsed() throws {
        guard unpublished else { return }
        // The elements must be visible before the index that publishes them.
        atomicMemoryFence(ordering: .releasing)
        try store(state.nextUsed, state.usedRing, 2)
        unpublished = false
    }

    // MARK: - Notification suppression

    /// Whether the driver wants an interrupt for the used entries added since the
    /// last one (§2.7.10: `used_event` with EVENT_IDX, else the avail NO_INTERRUPT flag).
    public func needsNotification() throws -> Bool {
        try publishUsed()
        // Our used.idx store must be visible before we read the driver's suppression fields.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        guard state.eventIdx else {
            let flags = try load16(state.availRing, 0)
            return flags & 1 == 0
        }
        let usedEvent = try load16(state.availRing, 4 + 2 * UInt64(state.size))
        let new = state.nextUsed
        let old = state.signalledUsed
        state.signalledUsed = new
        guard let old else { return true }
        // vring_need_event: did used.idx step over used_event since `old`?
        return new &- usedEvent &- 1 < new &- old
    }

    /// Asks the driver to notify us when it makes the next buffer available
    /// (avail_event = its current avail.idx with EVENT_IDX, else clearing the used
    /// NO_NOTIFY flag). Returns true when buffers we have not taken are waiting, so the
    /// caller processes them instead of waiting.
    ///
    /// avail_event follows the driver's index, not ours: a device that leaves buffers
    /// in the ring (too few for a frame) must still hear about the next one.
    public func enableNotification() throws -> Bool {
        if state.eventIdx {
            try store(try availIndex(), state.usedRing, 4 + 8 * UInt64(state.size))
        } else {
            try store(UInt16(0), state.usedRing, 0)
        }
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return try pendingCount() > 0
    }

    /// Tells the driver it need not notify us while we are draining the queue.
    /// With EVENT_IDX nothing is written: the driver only notifies when it passes
    /// avail_event, which we leave where it was.
    public func disableNotification() throws {
        if !state.eventIdx { try store(UInt16(1), state.usedRing, 0) }
    }

    // MARK: - Ring access

    // Ring offsets are checked for wrap-around even though `validate` already
    // bounded them: a queue used before validation must fail, not trap.
    // Concrete 16/32-bit accessors: GuestMemory's generic load/store are not
    // specialised across the module boundary, and these run several times per request.
    // Transient views: a load marks nothing, a store marks its page written (for
    // migration) once done.
    private func ring(_ base: UInt64, _ offset: UInt64, _ count: UInt64) throws -> (GuestAddress, UnsafeMutableRawBufferPointer) {
        guard let at = GuestAddress(base).adding(offset) else { throw VirtqueueError.memory(.invalidAddress(GuestAddress(base))) }
        do { return (at, try memory.transientBuffer(at: at, length: count)) } catch let e as GuestMemoryError { throw VirtqueueError.memory(e) }
    }

    private func load16(_ base: UInt64, _ offset: UInt64) throws -> UInt16 {
        UInt16(littleEndian: try ring(base, offset, 2).1.loadUnaligned(as: UInt16.self))
    }

    private func store(_ value: UInt16, _ base: UInt64, _ offset: UInt64) throws {
        let (at, view) = try ring(base, offset, 2)
        view.storeBytes(of: value.littleEndian, as: UInt16.self)
        memory.markWritten(at, length: 2)
    }

    private func store(_ value: UInt32, _ base: UInt64, _ offset: UInt64) throws {
        let (at, view) = try ring(base, offset, 4)
        view.storeBytes(of: value.littleEndian, as: UInt32.self)
        memory.markWritten(at, length: 4)
    }
}
