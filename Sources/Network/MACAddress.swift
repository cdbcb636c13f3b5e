#if canImport(Glibc)
import Glibc
#endif

/// An Ethernet MAC address.
public struct MACAddress: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Six bytes; nil otherwise.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    /// Parses `52:54:00:12:34:56` (or with `-`). A group address is refused: a NIC
    /// cannot use one as its own.
    public init(parsing text: String) throws {
        let parts = text.split(separator: text.contains("-") ? "-" : ":", omittingEmptySubsequences: false)
        guard parts.count == 6,
              let bytes = Optional(parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }), bytes.count == 6
        else { throw MACAddressError.malformed(text) }
        guard bytes[0] & 1 == 0 else { throw MACAddressError.multicast(text) }
        self.bytes = bytes
    }

    /// A random unicast, locally administered address (first byte xxxxxx10).
    public static func random() -> MACAddress {
        var b = (0..<6).map { _ in UInt8.random(in: 0...255) }
        b[0] = (b[0] & 0xfc) | 0x02
        return MACAddress(bytes: b)!
    }

    public var isLocallyAdministered: Bool { bytes[0] & 2 != 0 }
    public var isMulticast: Bool { bytes[0] & 1 != 0 }

    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }
}

public enum MACAddressError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case multicast(String)

    public var description: String {
        switch self {
        case .malformed(let t): return "invalid MAC address '\(t)': expected six hex bytes like 52:54:00:12:34:56"
        case .multicast(let t): return "MAC address '\(t)' is a multicast address (lowest bit of the first byte set)"
        }
    }
}
