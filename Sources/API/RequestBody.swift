/// A JSON request body: decoded from untrusted bytes, then checked before the VMM
/// sees it, so the VMM only ever gets well-formed values.
public protocol RequestBody: Codable, Sendable {
    /// Throws `ControlError(.badRequest, …)` for values that decode but make no sense.
    func validate() throws
}

/// Checks shared by the URL fields of the snapshot and migration bodies.
enum URLField {
    /// Longer than any real path or address; keeps a hostile value out of logs and the VMM.
    static let maximumLength = 4096

    /// `value` must be non-empty, short, free of control characters and start with one
    /// of `schemes` followed by something.
    static func check(_ value: String, field: String, schemes: [String]) throws {
        guard !value.isEmpty else { throw ControlError(.badRequest, "\(field) is empty") }
        guard value.utf8.count <= maximumLength else {
            throw ControlError(.badRequest, "\(field) is longer than \(maximumLength) bytes")
        }
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw ControlError(.badRequest, "\(field) contains control characters")
        }
        guard let scheme = schemes.first(where: { value.hasPrefix($0) }), value.count > scheme.count else {
            let list = schemes.map { "'\($0)…'" }.joined(separator: " or ")
            throw ControlError(.badRequest, "\(field) must be \(list)")
        }
    }

    /// An absolute file path: non-empty, bounded, no control characters.
    static func checkPath(_ value: String, field: String) throws {
        guard !value.isEmpty else { throw ControlError(.badRequest, "\(field) is empty") }
        guard value.utf8.count <= maximumLength else {
            throw ControlError(.badRequest, "\(field) is longer than \(maximumLength) bytes")
        }
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw ControlError(.badRequest, "\(field) contains control characters")
        }
        guard value.hasPrefix("/") else { throw ControlError(.badRequest, "\(field) must be an absolute path") }
    }
}
