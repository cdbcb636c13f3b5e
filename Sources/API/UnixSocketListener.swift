#if canImport(Glibc)
import Glibc
#endif

/// Makes the listening socket at a path: owner-only from the moment it exists, and
/// never stealing the path from a live server or deleting something that is not a
/// socket.
enum UnixSocketListener {
    /// What was bound, so `stop()` removes the path only if it is still ours.
    struct Bound {
        var descriptor: Int32
        var device: UInt64
        var inode: UInt64
    }

    static func bind(path: String) throws -> Bound {
        guard !path.isEmpty else { throw APIServerError("the API socket path is empty") }
        guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
            throw APIServerError("the API socket path is too long (at most 107 bytes): \(path)")
        }
        try clearStale(path: path)

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw APIServerError("cannot create a socket: \(errorText())") }
        // Linux creates the socket file with the socket inode's mode less the umask, so
        // setting 0600 here, before bind, leaves no moment when the path is open to others
        // (and does not touch the process-wide umask other threads rely on).
        guard fchmod(fd, 0o600) == 0 else {
            let text = errorText()
            close(fd)
            throw APIServerError("cannot restrict the API socket: \(text)")
        }
        let result = withAddress(path) { address, length in Glibc.bind(fd, address, length) }
        guard result == 0 else {
            let text = errorText()
            close(fd)
            throw APIServerError("cannot bind the API socket \(path): \(text)")
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            let text = errorText()
            close(fd)
            throw APIServerError("cannot stat the API socket \(path): \(text)")
        }
        return Bound(descriptor: fd, device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Removes `path` if it is a socket nobody serves; refuses a live one and anything else.
    static func clearStale(path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw APIServerError("cannot use \(path) for the API socket: \(errorText())")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw APIServerError("\(path) exists and is not a socket; refusing to replace it")
        }
        switch probe(path: path) {
        case 0:
            throw APIServerError("another skiff serves \(path)")
        case ECONNREFUSED:
            guard unlink(path) == 0 || errno == ENOENT else {
                throw APIServerError("cannot remove the stale socket \(path): \(errorText())")
            }
        case let code:
            throw APIServerError("cannot use \(path) for the API socket: \(String(cString: strerror(code)))")
        }
    }

    /// Connects to `path` and hangs up: 0 if something listens, else the errno.
    static func probe(path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        let result = withAddress(path) { address, length in connect(fd, address, length) }
        return result == 0 ? 0 : errno
    }

    /// Removes `bound`'s path if the file there is still the socket we made.
    static func remove(path: String, bound: Bound) {
        var info = stat()
        guard lstat(path, &info) == 0, UInt64(info.st_dev) == bound.device, UInt64(info.st_ino) == bound.inode else { return }
        unlink(path)
    }

    static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8.prefix(MemoryLayout.size(ofValue: address.sun_path) - 1))
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}

/// Why the API server could not start; `message` is one line for the user.
public struct APIServerError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
