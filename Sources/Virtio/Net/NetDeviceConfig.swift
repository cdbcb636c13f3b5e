import Network

/// One `--net` option: `tap=NAME[,mac=MAC]`.
public struct NetDeviceConfig: Equatable, Sendable {
    public var tap: String
    /// nil: a random locally administered address, chosen when the device is created.
    public var mac: MACAddress?

    public init(tap: String, mac: MACAddress? = nil) {
        self.tap = tap
        self.mac = mac
    }

    public init(parsing text: String) throws {
        var tap: String?
        var mac: MACAddress?
        var seen: Set<String> = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let eq = item.firstIndex(of: "=") else {
                throw OptionError("'\(item)' is not key=value (expected tap=NAME[,mac=MAC])")
            }
            let key = String(item[..<eq])
            let value = String(item[item.index(after: eq)...])
            guard seen.insert(key).inserted else { throw OptionError("'\(key)' given twice") }
            switch key {
            case "tap":
                guard !value.isEmpty else { throw OptionError("tap name is empty") }
                tap = value
            case "mac":
                do { mac = try MACAddress(parsing: value) } catch { throw OptionError("\(error)") }
            default:
                throw OptionError("unknown key '\(key)' (known: tap, mac)")
            }
        }
        guard let tap else { throw OptionError("missing tap=NAME") }
        self.init(tap: tap, mac: mac)
    }
}
