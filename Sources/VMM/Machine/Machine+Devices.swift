import Virtio

extension Machine {
    /// A disk as the VM has it open: the format is the one detected or given.
    public struct DiskSummary: Sendable {
        public var path: String
        public var readOnly: Bool
        public var format: String
        public var serial: String?
    }

    /// A network card as the VM has it: the TAP's name and the MAC the guest sees
    /// (the random one when none was given).
    public struct NetworkSummary: Sendable {
        public var tap: String
        public var mac: String
    }

    /// The disks, in the guest's order (vda, vdb, …).
    public var disks: [DiskSummary] {
        virtio.transports.compactMap { $0.device as? VirtioBlock }.map {
            DiskSummary(path: $0.image.path, readOnly: $0.image.isReadOnly, format: $0.image.format.rawValue,
                        serial: $0.serial)
        }
    }

    /// The network cards, in the guest's order (eth0, eth1, …).
    public var networks: [NetworkSummary] {
        virtio.transports.compactMap { $0.device as? VirtioNet }.map {
            NetworkSummary(tap: $0.tap.name, mac: $0.mac.description)
        }
    }
}
