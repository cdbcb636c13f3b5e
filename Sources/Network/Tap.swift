import CKVM
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A TAP network interface opened with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`: every
/// frame read or written starts with a 12-byte virtio-net header, so a virtio-net
/// device can pass offload information through without translating it.
///
/// An existing TAP with this name is reused; otherwise the kernel creates one (which
/// needs CAP_NET_ADMIN and disappears when the file descriptor is closed).
/// The descriptor is non-blocking, for the device event loop.
public final class Tap: Sendable {
    /// struct virtio_net_hdr_v1 (virtio 1.x, with num_buffers).
    public static let vnetHeaderSize = 12
    /// TUNSETOFFLOAD bits: which offloaded frames the kernel may hand us.
    public enum Offload {
        public static let checksum = UInt32(TUN_F_CSUM)
        public static let tso4 = UInt32(TUN_F_TSO4)
        public static let tso6 = UInt32(TUN_F_TSO6)
        public static let tsoECN = UInt32(TUN_F_TSO_ECN)
        public static let ufo = UInt32(TUN_F_UFO)
    }

    /// The interface name the kernel gave the TAP.
    public let name: String
    public let fileDescriptor: Int32
    /// False for a descriptor adopted with `init(adopting:name:)`: no TUN ioctls on it.
    public let isTunDevice: Bool

    /// Wraps an open, non-blocking descriptor that carries one frame (vnet header
    /// first) per read and write, such as a datagram socketpair standing in for a
    /// TAP in tests. Takes ownership: it is closed with the `Tap`. Offloads are not set.
    public init(adopting fileDescriptor: Int32, name: String) {
        self.fileDescriptor = fileDescriptor
        self.name = name
        isTunDevice = false
    }

    public init(name: String) throws {
        let bytes = Array(name.utf8)
        guard (1...15).contains(bytes.count), !bytes.contains(where: { $0 == 0x2f || $0 == 0x3a || $0 <= 0x20 || $0 >= 0x7f }),
              name != ".", name != ".." else { throw TapError.invalidName(name) }
        let fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT || e == ENODEV || e == ENXIO { throw TapError.noTunDevice }
            if e == EACCES || e == EPERM { throw TapError.notPermitted(name) }
            throw TapError.system(operation: "open /dev/net/tun", name: name, errno: e)
        }
        var request = ifreq()
        // SAFETY: at most 15 bytes into the 16-byte, zeroed ifr_name: stays NUL-terminated.
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        request.ifr_ifru.ifru_flags = Int16(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        if ckvm_ioctl_pointer(fd, CKVM_TUNSETIFF, &request) != 0 {
            let e = errno
            _ = Glibc.close(fd)
            switch e {
            case EPERM, EACCES: throw TapError.notPermitted(name)
            case EBUSY: throw TapError.busy(name)
            case EINVAL: throw TapError.notATap(name)
            default: throw TapError.system(operation: "TUNSETIFF", name: name, errno: e)
            }
        }
        var headerSize = Int32(Self.vnetHeaderSize)
        guard ckvm_ioctl_pointer(fd, CKVM_TUNSETVNETHDRSZ, &headerSize) == 0 else {
            let e = errno
            _ = Glibc.close(fd)
            throw TapError.system(operation: "TUNSETVNETHDRSZ", name: name, errno: e)
        }
        self.name = withUnsafeBytes(of: request.ifr_ifrn.ifrn_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        fileDescriptor = fd
        isTunDevice = true
    }

    deinit { close() }

    /// Set by `close()`: reads and writes fail with EBADF from then on, so a stray
    /// one cannot reach whatever file reuses the descriptor number.
    private let closed = Atomic<Bool>(false)

    /// Closes the TAP now rather than when the last reference goes: a TAP takes
    /// one descriptor at a time (TUNSETIFF: EBUSY), and a VM rebuilt in this
    /// process (`vm.reboot`) opens it again while the old one is still referenced.
    public func close() {
        if !closed.exchange(true, ordering: .acquiringAndReleasing) { _ = Glibc.close(fileDescriptor) }
    }

    private func checkOpen(_ operation: String) throws {
        if closed.load(ordering: .acquiring) { throw TapError.system(operation: operation, name: name, errno: EBADF) }
    }

    /// Tells the kernel which offloads the guest accepts (`Offload` bits); 0 means
    /// every frame arrives fully checksummed and segmented.
    public func setOffloads(_ flags: UInt32) throws {
        guard isTunDevice else { return }
        try checkOpen("TUNSETOFFLOAD")
        guard ckvm_ioctl_value(fileDescriptor, CKVM_TUNSETOFFLOAD, UInt(flags)) == 0 else {
            throw TapError.system(operation: "TUNSETOFFLOAD(0x\(String(flags, radix: 16)))", name: name, errno: errno)
        }
    }

    /// Reads one frame (virtio-net header first). Returns nil when none is waiting.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        try checkOpen("read")
        while true {
            let n = Glibc.read(fileDescriptor, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            switch errno {
            case EINTR: continue
            case EAGAIN: return nil
            default: throw TapError.system(operation: "read", name: name, errno: errno)
            }
        }
    }

    /// Reads one frame scattered over `count` iovecs. Returns the frame's length, or
    /// nil when none is waiting. A TAP reports a frame longer than the iovecs with its
    /// full length (the rest is cut off), so a result above their total means truncated.
    public func read(_ iovecs: UnsafeMutablePointer<iovec>, count: Int) throws -> Int? {
        try checkOpen("readv")
        while true {
            let n = readv(fileDescriptor, iovecs, Int32(count))
            if n >= 0 { return n }
            switch errno {
            case EINTR: continue
            case EAGAIN: return nil
            default: throw TapError.system(operation: "readv", name: name, errno: errno)
            }
        }
    }

    /// Writes one frame gathered from `count` iovecs (virtio-net header first).
    /// One iovec goes out with `write`: the kernel then skips importing an iovec array.
    @discardableResult
    public func write(_ iovecs: UnsafePointer<iovec>, count: Int) throws -> Int {
        try checkOpen("writev")
        while true {
            let n = count == 1 ? Glibc.write(fileDescriptor, iovecs[0].iov_base, iovecs[0].iov_len)
                               : writev(fileDescriptor, iovecs, Int32(count))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw TapError.system(operation: "writev", name: name, errno: errno)
        }
    }

    /// Writes one frame gathered from `buffers` (virtio-net header first) with writev.
    @discardableResult
    public func write(_ buffers: [UnsafeRawBufferPointer]) throws -> Int {
        // SAFETY: the iovecs point at the caller's buffers, valid for the duration of writev.
        var iovecs = buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        try checkOpen("writev")
        while true {
            let n = writev(fileDescriptor, &iovecs, Int32(iovecs.count))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw TapError.system(operation: "writev", name: name, errno: errno)
        }
    }
}
