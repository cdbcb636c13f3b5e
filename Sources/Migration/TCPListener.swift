import Posix
#if canImport(Glibc)
import Glibc
#endif

/// A listening TCP socket that hands out one connection (a migration
/// destination takes exactly one incoming VM).
public final class TCPListener: Sendable {
    public let fileDescriptor: Int32
    /// The port bound (useful when 0 was asked for).
    public let port: UInt16

    public init(_ endpoint: MigrationEndpoint) throws {
        guard let address = try endpoint.resolve(passive: true).first else {
            throw MigrationError(.connection, "\(endpoint) resolves to no address")
        }
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MigrationError(.connection, "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard address.withSockaddr({ bind(fd, $0, $1) }) == 0, listen(fd, 1) == 0 else {
            let why = String(cString: strerror(errno))
            Glibc.close(fd)
            throw MigrationError(.connection, "cannot listen on \(endpoint): \(why)")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let rawPort = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port }  // same offset for v6
        }
        fileDescriptor = fd
        port = UInt16(bigEndian: rawPort)
    }

    deinit { Glibc.close(fileDescriptor) }

    /// Waits for one connection; the listener stays open until released.
    public func accept(timeoutSeconds: Int = 30) throws -> TCPStream {
        while true {
            let fd = Glibc.accept(fileDescriptor, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                let stream = TCPStream(socket: fd)
                stream.setTimeout(seconds: timeoutSeconds)
                return stream
            }
            if errno == EINTR { continue }
            throw MigrationError(.connection, "accept: \(String(cString: strerror(errno)))")
        }
    }
}
