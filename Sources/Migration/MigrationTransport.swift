import Posix
import SecureChannel
#if canImport(Glibc)
import Glibc
#endif

/// How a migration stream is protected. Both ends must name one: a key file
/// (the default way, encrypted and authenticated) or plain TCP by explicit choice.
public enum MigrationSecurity: Equatable, Sendable {
    case key(path: String)
    case insecure

    /// The choice from `--migration-key FILE` / `--insecure-migration`; neither is refused.
    public static func from(keyPath: String?, insecure: Bool) throws -> MigrationSecurity {
        switch (keyPath, insecure) {
        case (let path?, false): return .key(path: path)
        case (nil, true): return .insecure
        case (_?, true): throw MigrationError(.usage, "give --migration-key FILE or --insecure-migration, not both")
        case (nil, false):
            throw MigrationError(.usage, "a migration key is needed: --migration-key FILE (the same file on both hosts; "
                + "make one with `skiff migration-key FILE`), or --insecure-migration for plain, unauthenticated TCP")
        }
    }
}

/// The one place a migration stream is made from a TCP connection: with a key,
/// the Noise handshake (`SecureChannel`, docs/migration-security.md) runs here
/// and the protocol gets the encrypted stream; with `--insecure-migration`,
/// the TCP stream itself. Nothing else in the migration knows which it got.
public enum MigrationTransport {
    public enum Role: Sendable { case source, destination }

    /// The stream the protocol runs over, handshake done.
    public static func wrap(_ connection: TCPStream, security: MigrationSecurity, role: Role) throws -> ByteStream {
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
    public static func connect(to endpoint: MigrationEndpoint, security: MigrationSecurity) throws -> ByteStream {
        if case .key = security { _ = try wrapCheck(security) }
        return try wrap(try TCPStream.connect(to: endpoint), security: security, role: .source)
    }

    /// Destination side: one connection from `listener`, wrapped.
    public static func accept(_ listener: TCPListener, security: MigrationSecurity) throws -> ByteStream {
        try wrap(try listener.accept(), security: security, role: .destination)
    }

    /// Refuses an unusable security choice before any connection is made.
    public static func wrapCheck(_ security: MigrationSecurity) throws -> MigrationSecurity {
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
