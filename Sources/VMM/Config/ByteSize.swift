/// Human sizes as users type them: `512M`, `2G`, `64K`, `1048576` (bytes),
/// binary units (K = 1024). Also accepts `MiB`/`GiB` spellings.
public enum ByteSize {
    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let text: String
        public let reason: String
        public var description: String { "invalid size '\(text)': \(reason)" }
    }

    public static func parse(_ text: String) throws -> UInt64 {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { throw ParseError(text: text, reason: "empty") }
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let number = UInt64(digits) else {
            throw ParseError(text: text, reason: "expected a number followed by an optional unit (K, M, G, T)")
        }
        let unit = trimmed.dropFirst(digits.count).uppercased()
        let shift: UInt64
        switch unit {
        case "", "B": shift = 0
        case "K", "KB", "KIB": shift = 10
        case "M", "MB", "MIB": shift = 20
        case "G", "GB", "GIB": shift = 30
        case "T", "TB", "TIB": shift = 40
        default: throw ParseError(text: text, reason: "unknown unit '\(unit)' (use K, M, G or T)")
        }
        let (value, overflow) = number.multipliedReportingOverflow(by: 1 << shift)
        guard !overflow else { throw ParseError(text: text, reason: "too large") }
        return value
    }

    /// `536870912` → `512 MiB`; inexact sizes get one decimal (`23.5 GiB`).
    public static func format(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = bytes, unit = 0
        while unit < units.count - 1, value >= 1024, value % 1024 == 0 { value /= 1024; unit += 1 }
        if value >= 1024 * 1024 && unit < units.count - 2 {
            var scaled = Double(value), u = unit
            while scaled >= 1024 && u < units.count - 1 { scaled /= 1024; u += 1 }
            return String(format: "%.1f ", scaled) + units[u]
        }
        return "\(value) \(units[unit])"
    }
}

import Foundation
