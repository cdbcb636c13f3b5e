import SkiffCLI
import Logging
import Migration
import Posix
import Virtio
import VMM

/// `skiff run --incoming tcp:ADDR:PORT`: listen, take one migrating VM, and
/// hand it back built, state applied, not yet run. Any failure (refusal,
/// malformed stream, the source gone) is an error here: nothing ran.
struct IncomingRun {
    var address: String
    var keyPath: String?
    var insecure: Bool
    /// Boot options given along with --incoming, which the stream replaces.
    var conflicting: [String]
    /// `--net` options given with --incoming: TAPs to open instead of the recorded ones, by order.
    var networks: [String] = []
    /// `--disk path=NEW.qcow2` options given with --incoming, by disk order: such
    /// a disk is not on shared storage; its top layer is received into that new overlay.
    var disks: [String] = []

    struct Received {
        var vm: Machine.IncomingVM
        /// Kept open: `running` is sent on it once the vCPUs run.
        var stream: ByteStream
    }

    func receive() throws -> Received {
        if let first = conflicting.first {
            throw ValidationError("\(first) cannot be used with --incoming: the VM's config arrives with it")
        }
        let taps = try networks.map { option -> String in
            let config = try NetDeviceConfig(parsing: option)
            guard config.mac == nil else {
                throw ValidationError("--net \(option): with --incoming only tap=NAME is given (the MAC is the guest's)")
            }
            return config.tap
        }
        let overlays = try disks.map { option -> String in
            let config = try BlockDeviceConfig(parsing: option)
            guard !config.readOnly, config.serial == nil, config.format == nil else {
                throw ValidationError("--disk \(option): with --incoming only path=NEW.qcow2 is given (a new overlay "
                    + "that receives the disk's top layer; the rest is the source's)")
            }
            return config.path
        }
        return try Self.receive(address: address, keyPath: keyPath, insecure: insecure, taps: taps, disks: overlays)
    }

    /// Listens on `address`, takes one VM, and returns it built and not yet run.
    static func receive(address: String, keyPath: String?, insecure: Bool, taps: [String] = [],
                        disks: [String] = []) throws -> Received {
        let security = try MigrationTransport.wrapCheck(try MigrationSecurity.from(keyPath: keyPath, insecure: insecure))
        let endpoint = try MigrationEndpoint(parsing: address)
        let log = Logger(label: "skiff.migration")
        let listener = try TCPListener(endpoint)
        if security == .insecure {
            log.warning("--insecure-migration: the VM's memory crosses the network unencrypted and unauthenticated")
        }
        log.info("waiting for an incoming VM on \(endpoint) (port \(listener.port))")
        let stream = try MigrationTransport.accept(listener, security: security)
        let vm = try Machine.receiveMigration(over: stream, taps: taps, disks: disks)
        log.info("received a VM in \(vm.iterations) memory round(s); starting it")
        return Received(vm: vm, stream: stream)
    }
}
