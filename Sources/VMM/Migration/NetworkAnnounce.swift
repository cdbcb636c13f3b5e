import Foundation
import Logging
import Network
import Virtio

/// After a migration the guest's MAC sits behind a new switch port, which
/// bridges learn only when the guest next sends. The destination sends a few
/// RARP announcements out of each TAP with the guest's MAC as source, as
/// QEMU's `qemu_announce_self` does for guests without VIRTIO_NET_F_GUEST_ANNOUNCE:
/// the first at once, then `rounds - 1` more, spaced 50, 150, 250… ms apart, so
/// a frame lost while the port comes up is made up for.
enum NetworkAnnounce {
    static let rounds = 5

    /// One RARP "reverse request" naming `mac`, padded to the 60-byte Ethernet minimum.
    static func rarpFrame(_ mac: MACAddress) -> [UInt8] {
        var f: [UInt8] = Array(repeating: 0xff, count: 6) + mac.bytes + [0x80, 0x35]  // broadcast, source, RARP
        f += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03]  // Ethernet, IPv4, lengths, op 3 (request reverse)
        f += mac.bytes + [0, 0, 0, 0] + mac.bytes + [0, 0, 0, 0]
        f += Array(repeating: 0, count: 60 - f.count)
        return f
    }

    /// Sends the rounds from a thread of its own; returns at once.
    static func start(_ cards: [(tap: Tap, mac: MACAddress)], log: @escaping @Sendable (String) -> Void) {
        guard !cards.isEmpty else { return }
        let frames = cards.map { (tap: $0.tap, frame: [UInt8](repeating: 0, count: Tap.vnetHeaderSize) + rarpFrame($0.mac)) }
        let thread = Thread {
            var sent = 0
            for round in 0..<rounds {
                if round > 0 { usleep(useconds_t(50_000 + 100_000 * (round - 1))) }
                for card in frames {
                    // SAFETY: the frame outlives the synchronous writev.
                    if (try? card.frame.withUnsafeBytes { try card.tap.write([$0]) }) != nil { sent += 1 }
                }
            }
            log("announced \(cards.count) network card(s) after migration: \(sent) RARP frame(s) in \(rounds) rounds")
        }
        thread.name = "skiff-announce"
        thread.start()
    }
}

extension Machine {
    /// Tells the network where the guest now is (see `NetworkAnnounce`).
    func announceNetworkCards() {
        let cards = virtio.transports.compactMap { $0.device as? VirtioNet }.map { (tap: $0.tap, mac: $0.mac) }
        let log = self.log
        NetworkAnnounce.start(cards) { log.info("\($0)") }
    }
}
