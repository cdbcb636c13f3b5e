import Posix

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

/// The one place a migration stream is made from a TCP connection: the secure
/// channel plugs in here (the two `.key` branches below: `wrapCheck` reads and
/// checks the key file, `wrap` runs the handshake), and nothing else in the
/// migration knows which stream it got.
public enum MigrationTransport {
    public enum Role: Sendable { case source, destination }

    /// The stream the protocol runs over, handshake done.
    public static func wrap(_ connection: TCPStream, security: MigrationSecurity, role: Role) throws -> ByteStream {
        switch security {
        case .insecure:
            return connection
        case .key:
            connection.close()
            throw MigrationError(.usage, "encrypted migration (--migration-key) is not in this build yet; "
                + "use --insecure-migration on both ends for plain TCP")
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
        if case .key = security {
            throw MigrationError(.usage, "encrypted migration (--migration-key) is not in this build yet; "
                + "use --insecure-migration on both ends for plain TCP")
        }
        return security
    }
}
