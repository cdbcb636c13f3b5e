import Storage

/// One `--disk` option: `path=FILE[,readonly=on][,serial=ID][,format=raw|qcow2]`.
public struct BlockDeviceConfig: Equatable, Sendable {
    public var path: String
    public var readOnly: Bool
    /// Up to 20 bytes, returned by VIRTIO_BLK_T_GET_ID (Linux: /sys/block/vda/serial).
    public var serial: String?
    /// nil: detect from the file's magic.
    public var format: DiskFormat?

    public init(path: String, readOnly: Bool = false, serial: String? = nil, format: DiskFormat? = nil) {
        self.path = path
        self.readOnly = readOnly
        self.serial = serial
        self.format = format
    }

    /// Parses the CLI syntax. Paths cannot contain commas.
    public init(parsing text: String) throws {
        var path: String?
        var readOnly = false
        var serial: String?
        var format: DiskFormat?
        var seen: Set<String> = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let eq = item.firstIndex(of: "=") else {
                throw OptionError("'\(item)' is not key=value (expected path=FILE[,readonly=on][,serial=ID][,format=raw|qcow2])")
            }
            let key = String(item[..<eq])
            let value = String(item[item.index(after: eq)...])
            guard seen.insert(key).inserted else { throw OptionError("'\(key)' given twice") }
            switch key {
            case "path":
                guard !value.isEmpty else { throw OptionError("path is empty") }
                path = value
            case "readonly":
                switch value {
                case "on", "true", "yes": readOnly = true
                case "off", "false", "no": readOnly = false
                default: throw OptionError("readonly=\(value): expected on or off")
                }
            case "serial":
                guard value.utf8.count <= 20 else { throw OptionError("serial '\(value)' is longer than 20 bytes") }
                guard value.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else { throw OptionError("serial '\(value)' must be printable ASCII") }
                serial = value
            case "format":
                guard let f = DiskFormat(rawValue: value) else { throw OptionError("format=\(value): expected raw or qcow2") }
                format = f
            default:
                throw OptionError("unknown key '\(key)' (known: path, readonly, serial, format)")
            }
        }
        guard let path else { throw OptionError("missing path=FILE") }
        self.init(path: path, readOnly: readOnly, serial: serial, format: format)
    }
}
