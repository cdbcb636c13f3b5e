import Migration
import Posix
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// The one place a migration stream is made from a TCP connection: with a key,
/// the Noise handshake (`SecureChannel`, docs/migration-security.md) runs here
/// and the protocol gets the encrypted stream; with `--insecure-migration`,
/// the TCP stream itself. Nothing else in the migration knows which it got.
/// It lives in `skiff` (not `Migration`) so the protocol and its parsers do not
/// depend on the cryptography (the fuzz harnesses build them alone).
enum MigrationTransport {
    enum Role: Sendable { case source, destination }

    /// The stream the protocol runs over, handshake done.
    static func wrap(_ connection: TCPStream, security: MigrationSecurity, role: Role) throws -> ByteStream {
        switch security {
        case .insecure:
            return connection
        case .key(let path):
            let key: MigrationKey
            do {
                key = try MigrationKey.load(from: path)
            } catch {
                connection.close()
                throw MigrationError(.usage, "\(error)")
            }
            let idle = connection.timeoutSeconds
            let socket = connection.releaseSocket()
            do {
                let channel = role == .source ? try SecureChannel.initiator(socket: socket, key: key)
                                              : try SecureChannel.responder(socket: socket, key: key)
                // The TCP stream's limit on a silent peer holds for the encrypted one too.
                channel.idleTimeout = idle.map { .seconds($0) }
                return channel
            } catch {
                // The handshake failed: the socket is still ours to close.
                shutdown(socket, Int32(SHUT_RDWR))
                Glibc.close(socket)
                throw MigrationError(.refused, "the secure channel was not established (the same key on both hosts?): \(error)")
            }
        }
    }

    /// Source side: connect and wrap.
    static func connect(to endpoint: MigrationEndpoint, security: MigrationSecurity) throws -> ByteStream {
        if case .key = security { _ = try wrapCheck(security) }
        return try wrap(try TCPStream.connect(to: endpoint), security: security, role: .source)
    }

    /// Destination side: one connection from `listener`, wrapped.
    static func accept(_ listener: TCPListener, security: MigrationSecurity) throws -> ByteStream {
        try wrap(try listener.accept(), security: security, role: .destination)
    }

    /// Refuses an unusable security choice before any connection is made.
    static func wrapCheck(_ security: MigrationSecurity) throws -> MigrationSecurity {
        if case .key(let path) = security {
            do {
                _ = try MigrationKey.load(from: path)
            } catch {
                throw MigrationError(.usage, "\(error)")
            }
        }
        return security
    }
}
