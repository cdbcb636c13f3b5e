#if canImport(Glibc)
import Glibc
#endif

/// Why a TAP device could not be opened or used, worded for the person running Skiff.
public enum TapError: Error, Equatable, CustomStringConvertible {
    /// `/dev/net/tun` is missing (no tun module, or not visible in this container).
    case noTunDevice
    /// Creating or attaching needs CAP_NET_ADMIN (or ownership of a persistent TAP).
    case notPermitted(String)
    /// Another process has the TAP open.
    case busy(String)
    /// The name exists but is not a TAP (e.g. a TUN device or a physical interface).
    case notATap(String)
    /// Not a valid interface name (1–15 bytes, no '/', ':' or whitespace).
    case invalidName(String)
    /// Any other failed host call.
    case system(operation: String, name: String, errno: Int32)

    public var description: String {
        switch self {
        case .noTunDevice: return "no /dev/net/tun: load the tun module (modprobe tun) or pass the device into the container"
        case .notPermitted(let n): return "TAP \(n) not permitted: run as root or give CAP_NET_ADMIN (or create it with `ip tuntap add \(n) mode tap vnet_hdr user $USER`)"
        case .busy(let n): return "TAP \(n) is in use by another process"
        case .notATap(let n): return "\(n) exists and is not a TAP device"
        case .invalidName(let n): return "'\(n)' is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
        case .system(let op, let n, let e): return "TAP \(n): \(op) failed: \(String(cString: strerror(e)))"
        }
    }
}
