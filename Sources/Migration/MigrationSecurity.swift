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
