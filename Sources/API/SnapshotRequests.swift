/// `PUT vm.snapshot` body, as Cloud Hypervisor's `VmSnapshotConfig`.
public struct SnapshotRequest: RequestBody, Equatable {
    /// `file:///DIR`: the directory the snapshot is written to.
    public var destinationURL: String

    public init(destinationURL: String) { self.destinationURL = destinationURL }

    enum CodingKeys: String, CodingKey { case destinationURL = "destination_url" }

    public func validate() throws {
        try URLField.check(destinationURL, field: "destination_url", schemes: ["file:///"])
    }
}

/// `PUT vm.restore` body, as Cloud Hypervisor's `RestoreConfig`.
public struct RestoreRequest: RequestBody, Equatable {
    /// `file:///DIR`: a directory written by `vm.snapshot`.
    public var sourceURL: String
    /// Fault the guest's memory in up front rather than on demand.
    public var prefault: Bool?

    public init(sourceURL: String, prefault: Bool? = nil) {
        self.sourceURL = sourceURL
        self.prefault = prefault
    }

    enum CodingKeys: String, CodingKey {
        case sourceURL = "source_url"
        case prefault
    }

    public func validate() throws {
        try URLField.check(sourceURL, field: "source_url", schemes: ["file:///"])
    }
}
