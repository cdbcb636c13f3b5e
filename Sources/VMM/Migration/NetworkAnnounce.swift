import Logging
import Network
import Posix
import Virtio
#if canImport(Glibc)
import Glibc
#endif

/// After a migration the guest's MAC sits behind a new switch port, which
/// bridges learn only when the guest next sends. The destination does two
/// things in each of a few rounds — the first at once, then `rounds - 1` more,
/// spaced 50, 150, 250… ms apart, so a frame lost while the port comes up is
/// made up for:
///
/// - it sends a RARP announcement out of each TAP with the guest's MAC as
///   source (QEMU's `qemu_announce_self`). This works for every guest and at
///   once, even for a VM that arrives paused;
/// - for a driver that negotiated VIRTIO_NET_F_GUEST_ANNOUNCE it sets
///   VIRTIO_NET_S_ANNOUNCE and raises a configuration-change interrupt, and
///   the guest sends gratuitous ARPs for its own addresses, which also refresh
///   its peers' ARP caches. A request still unacknowledged is not repeated.
///   QEMU, too, does both for such a guest.
enum NetworkAnnounce {
    static let rounds = 5
    /// How long the thread waits after the last round for the guests' acks, only to report them.
    static let ackWait: Double = 10

    /// One RARP "reverse request" naming `mac`, padded to the 60-byte Ethernet minimum.
    static func rarpFrame(_ mac: MACAddress) -> [UInt8] {
        var f: [UInt8] = Array(repeating: 0xff, count: 6) + mac.bytes + [0x80, 0x35]  // broadcast, source, RARP
        f += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03]  // Ethernet, IPv4, lengths, op 3 (request reverse)
        f += mac.bytes + [0, 0, 0, 0] + mac.bytes + [0, 0, 0, 0]
        f += Array(repeating: 0, count: 60 - f.count)
        return f
    }

    /// Sends the rounds from a thread of its own; returns at once.
    /// - Parameter cards: each network card's transport (for the guest announce) and device.
    static func start(_ cards: [(transport: VirtioMMIOTransport, card: VirtioNet)], log: @escaping @Sendable (String) -> Void) {
        guard !cards.isEmpty else { return }
        let frames = cards.map { (tap: $0.card.tap, frame: [UInt8](repeating: 0, count: Tap.vnetHeaderSize) + rarpFrame($0.card.mac)) }
        let announce: @Sendable () -> Void = {
            var sent = 0
            var requested = 0
            var guestCards = Set<Int>()
            for round in 0..<rounds {
                if round > 0 { usleep(useconds_t(50_000 + 100_000 * (round - 1))) }
                for card in frames {
                    // SAFETY: the frame outlives the synchronous writev.
                    if (try? card.frame.withUnsafeBytes { try card.tap.write([$0]) }) != nil { sent += 1 }
                }
                for (i, c) in cards.enumerated() {
                    switch c.transport.withDevice({ _ in c.card.requestAnnounce() }) {
                    case .requested: requested += 1; guestCards.insert(i)
                    case .stillPending: guestCards.insert(i)
                    case .notNegotiated: break
                    }
                }
            }
            log("announced \(cards.count) network card(s) after migration: \(sent) RARP frame(s) in \(rounds) rounds; "
                + "guest announce requested \(requested) time(s) on \(guestCards.count) card(s)")
            guard !guestCards.isEmpty else { return }
            let deadline = ContinuousClock.now + .seconds(ackWait)
            func pending() -> Bool { guestCards.contains { i in cards[i].transport.withDevice { _ in cards[i].card.isAnnouncePending } } }
            while pending(), ContinuousClock.now < deadline { usleep(50_000) }
            let acks = guestCards.reduce(0) { n, i in n + cards[i].transport.withDevice { _ in cards[i].card.announceAcks } }
            log(pending() ? "guest announce: \(acks) acknowledged, a request still pending (a paused guest answers when it runs)"
                          : "guest announce: \(acks) acknowledged by the guest")
        }
        do {
            try DetachedThread.start(name: "skiff-announce", announce)
        } catch {
            log("cannot announce the network cards after migration: \(error)")
        }
    }
}

extension Machine {
    /// Tells the network where the guest now is (see `NetworkAnnounce`).
    func announceNetworkCards() {
        let cards = virtio.transports.compactMap { t in (t.device as? VirtioNet).map { (transport: t, card: $0) } }
        let log = self.log
        NetworkAnnounce.start(cards) { log.info("\($0)") }
    }
}
