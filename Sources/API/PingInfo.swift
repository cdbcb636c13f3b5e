/// The answer of `GET vmm.ping`, shaped like Cloud Hypervisor's `VmmPingResponse`.
public struct PingInfo: Codable, Sendable, Equatable {
    public var buildVersion: String
    public var version: String
    public var pid: Int64
    public var features: [String]

    public init(buildVersion: String, version: String, pid: Int64, features: [String] = []) {
        self.buildVersion = buildVersion
        self.version = version
        self.pid = pid
        self.features = features
    }

    enum CodingKeys: String, CodingKey {
        case buildVersion = "build_version"
        case version, pid, features
    }
}
