/// `PUT vm.send-migration` body: Cloud Hypervisor's `VmSendMigrationData`
/// (`destination_url`, `local`) plus Skiff's security and downtime fields.
public struct SendMigrationRequest: RequestBody, Equatable {
    /// `tcp:HOST:PORT`.
    public var destinationURL: String
    /// Migrate to a VMM on the same host (memory shared, not copied). Not supported.
    public var local: Bool?
    /// A key file made by `skiff migration-key FILE`, the same on both hosts.
    public var migrationKey: String?
    /// Plain TCP, unauthenticated and unencrypted: only when asked for by name.
    public var insecureMigration: Bool?
    /// The longest the guest may be stopped for the switch-over (default 5 ms).
    public var downtimeLimitMs: UInt64?

    public init(destinationURL: String, local: Bool? = nil, migrationKey: String? = nil, insecureMigration: Bool? = nil,
                downtimeLimitMs: UInt64? = nil) {
        self.destinationURL = destinationURL
        self.local = local
        self.migrationKey = migrationKey
        self.insecureMigration = insecureMigration
        self.downtimeLimitMs = downtimeLimitMs
    }

    enum CodingKeys: String, CodingKey {
        case destinationURL = "destination_url"
        case local
        case migrationKey = "migration_key"
        case insecureMigration = "insecure_migration"
        case downtimeLimitMs = "downtime_limit_ms"
    }

    public func validate() throws {
        try URLField.check(destinationURL, field: "destination_url", schemes: ["tcp:", "unix:"])
        try MigrationSecurityFields.check(key: migrationKey, insecure: insecureMigration)
        if let ms = downtimeLimitMs, !(1...60_000).contains(ms) {
            throw ControlError(.badRequest, "downtime_limit_ms must be between 1 and 60000")
        }
        if local == true { throw ControlError(.badRequest, "local migration is not supported; give a tcp: address") }
    }
}

/// The key fields both migration requests share.
enum MigrationSecurityFields {
    static func check(key: String?, insecure: Bool?) throws {
        if let key {
            try URLField.checkPath(key, field: "migration_key")
            guard insecure != true else {
                throw ControlError(.badRequest, "give migration_key or insecure_migration, not both")
            }
        } else if insecure != true {
            throw ControlError(.badRequest, "a migration key is needed: migration_key (made by `skiff migration-key FILE`), "
                + "or insecure_migration: true for plain TCP")
        }
    }
}

/// `PUT vm.receive-migration` body: Cloud Hypervisor's `VmReceiveMigrationData`
/// plus the same security fields as `vm.send-migration`.
public struct ReceiveMigrationRequest: RequestBody, Equatable {
    /// `tcp:HOST:PORT` to listen on.
    public var receiverURL: String
    public var migrationKey: String?
    public var insecureMigration: Bool?

    public init(receiverURL: String, migrationKey: String? = nil, insecureMigration: Bool? = nil) {
        self.receiverURL = receiverURL
        self.migrationKey = migrationKey
        self.insecureMigration = insecureMigration
    }

    enum CodingKeys: String, CodingKey {
        case receiverURL = "receiver_url"
        case migrationKey = "migration_key"
        case insecureMigration = "insecure_migration"
    }

    public func validate() throws {
        try URLField.check(receiverURL, field: "receiver_url", schemes: ["tcp:", "unix:"])
        try MigrationSecurityFields.check(key: migrationKey, insecure: insecureMigration)
    }
}

/// The answer of a successful `vm.send-migration`: what the migration measured.
public struct MigrationResult: Codable, Equatable, Sendable {
    public var totalMs: Double
    /// Guest stopped: pause on the source → the destination confirmed it runs.
    public var downtimeMs: Double
    public var bytes: UInt64
    public var iterations: Int
    /// False when pre-copy hit its bounds and switched over anyway.
    public var converged: Bool
    /// The highest vCPU throttle auto-converge used, percent (0: none).
    public var throttlePercent: Int

    public init(totalMs: Double, downtimeMs: Double, bytes: UInt64, iterations: Int, converged: Bool, throttlePercent: Int) {
        self.totalMs = totalMs
        self.downtimeMs = downtimeMs
        self.bytes = bytes
        self.iterations = iterations
        self.converged = converged
        self.throttlePercent = throttlePercent
    }

    enum CodingKeys: String, CodingKey {
        case totalMs = "total_ms"
        case downtimeMs = "downtime_ms"
        case bytes, iterations, converged
        case throttlePercent = "throttle_percent"
    }
}
