/// `PUT vm.send-migration` body, as Cloud Hypervisor's `VmSendMigrationData`.
public struct SendMigrationRequest: RequestBody, Equatable {
    /// `tcp:HOST:PORT` or `unix:PATH`.
    public var destinationURL: String
    /// Migrate to a VMM on the same host (memory shared, not copied).
    public var local: Bool?

    public init(destinationURL: String, local: Bool? = nil) {
        self.destinationURL = destinationURL
        self.local = local
    }

    enum CodingKeys: String, CodingKey {
        case destinationURL = "destination_url"
        case local
    }

    public func validate() throws {
        try URLField.check(destinationURL, field: "destination_url", schemes: ["tcp:", "unix:"])
    }
}

/// `PUT vm.receive-migration` body, as Cloud Hypervisor's `VmReceiveMigrationData`.
public struct ReceiveMigrationRequest: RequestBody, Equatable {
    /// `tcp:HOST:PORT` or `unix:PATH` to listen on.
    public var receiverURL: String

    public init(receiverURL: String) { self.receiverURL = receiverURL }

    enum CodingKeys: String, CodingKey { case receiverURL = "receiver_url" }

    public func validate() throws {
        try URLField.check(receiverURL, field: "receiver_url", schemes: ["tcp:", "unix:"])
    }
}
