/// A size in bytes written the way people write it: `512`, `64K`, `512M`, `8G`,
/// `1T` (powers of 1024; an optional trailing `B` or `iB` is accepted).
public struct ByteSize: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let bytes: UInt64

    public init(bytes: UInt64) { self.bytes = bytes }

    /// Parses `text`; throws `.invalidArgument` for anything else (including overflow).
    public init(parsing text: String) throws {
        var s = text.trimmingWhitespace()
        if s.hasSuffix("iB") || s.hasSuffix("ib") { s = s.dropLast(2) } else if s.last == "B" || s.last == "b" { s = s.dropLast() }
        var shift: UInt64 = 0
        if let unit = s.last, !unit.isNumber {
            switch unit.uppercased() {
            case "K": shift = 10
            case "M": shift = 20
            case "G": shift = 30
            case "T": shift = 40
            case "P": shift = 50
            default: throw StorageError(.invalidArgument, "unknown size unit '\(unit)' in '\(text)'")
            }
            s = s.dropLast()
        }
        guard !s.isEmpty, s.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt64(s) else {
            throw StorageError(.invalidArgument, "'\(text)' is not a size (e.g. 512M, 8G)")
        }
        let (v, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
        guard !overflow else { throw StorageError(.invalidArgument, "size '\(text)' is too large") }
        bytes = v
    }

    /// The largest exact unit: `8G`, `1536M`, `4097`.
    public var description: String {
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] as [(UInt64, String)] {
            let u: UInt64 = 1 << shift
            if bytes >= u, bytes % u == 0 { return "\(bytes / u)\(unit)" }
        }
        return "\(bytes)"
    }

    /// Human-readable with one decimal, as `qemu-img info` prints sizes: `1.5 GiB`.
    public var humanReadable: String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var v = Double(bytes)
        var i = 0
        while v >= 1024, i < units.count - 1 { v /= 1024; i += 1 }
        if i == 0 { return "\(bytes) B" }
        let tenths = Int((v * 10).rounded())
        return tenths % 10 == 0 ? "\(tenths / 10) \(units[i])" : "\(tenths / 10).\(tenths % 10) \(units[i])"
    }
}

extension String {
    /// By index, not through `reversed()`: building a String from a reversed
    /// sequence costs a first-time protocol-conformance lookup (≈ 2 M
    /// instructions, 7 % of `skiff run`'s start-up, docs/performance.md).
    fileprivate func trimmingWhitespace() -> Substring {
        var trimmed = self[...].drop(while: { $0.isWhitespace })
        while let last = trimmed.last, last.isWhitespace { trimmed = trimmed.dropLast() }
        return trimmed
    }
}
