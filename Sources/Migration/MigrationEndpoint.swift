#if canImport(Glibc)
import Glibc
#endif

/// `tcp:HOST:PORT` (HOST may be a name, an IPv4 address or `[IPv6]`).
public struct MigrationEndpoint: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `tcp:HOST:PORT`; anything else is a clear error.
    public init(parsing url: String) throws {
        guard url.hasPrefix("tcp:") else {
            throw MigrationError(.usage, "'\(url.prefix(80))' is not a migration address: give tcp:HOST:PORT")
        }
        let rest = url.dropFirst(4)
        guard let colon = rest.lastIndex(of: ":"), let port = UInt16(rest[rest.index(after: colon)...]) else {
            throw MigrationError(.usage, "'\(url.prefix(80))' has no port: give tcp:HOST:PORT")
        }
        var host = String(rest[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, host.utf8.count <= 255 else {
            throw MigrationError(.usage, "'\(url.prefix(80))' has no host: give tcp:HOST:PORT")
        }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)" }

    /// Whether HOST is an IPv4 or IPv6 address, i.e. connecting needs no name look-up.
    /// A VMM that already runs takes only these: glibc's look-up reads files, loads NSS
    /// modules and asks DNS servers, system calls its seccomp filters rightly forbid
    /// (a host name in `vm.send-migration` used to end the source VM with SIGSYS).
    public var isNumeric: Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// The same endpoint with HOST looked up and replaced by its first address, for
    /// the processes that may look names up (`skiff migrate`, before any filter).
    public func numeric() throws -> MigrationEndpoint {
        if isNumeric { return self }
        guard let first = try resolve().first else {
            throw MigrationError(.connection, "cannot resolve '\(host)': no address")
        }
        var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let rc = first.withSockaddr { getnameinfo($0, $1, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) }
        guard rc == 0 else {
            throw MigrationError(.connection, "cannot resolve '\(host)': \(String(cString: gai_strerror(rc)))")
        }
        let length = text.firstIndex(of: 0) ?? text.count
        return MigrationEndpoint(host: String(decoding: text[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self), port: port)
    }

    /// A resolved socket address.
    struct Address {
        var family: Int32
        var storage: sockaddr_storage
        var length: socklen_t

        func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
            var copy = storage
            return withUnsafePointer(to: &copy) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) } }
        }
    }

    func resolve(passive: Bool = false) throws -> [Address] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0 else {
            throw MigrationError(.connection, "cannot resolve '\(host)': \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var out: [Address] = []
        var node = list
        while let n = node {
            var storage = sockaddr_storage()
            let length = min(Int(n.pointee.ai_addrlen), MemoryLayout<sockaddr_storage>.size)
            withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: n.pointee.ai_addr, count: length)) }
            out.append(Address(family: n.pointee.ai_family, storage: storage, length: socklen_t(length)))
            node = n.pointee.ai_next
        }
        return out
    }
}
