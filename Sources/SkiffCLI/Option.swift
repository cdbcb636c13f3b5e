/// One `--long` option or flag a command declares. Plain data: the parser
/// matches spellings against it, the help text prints it. Nothing here is
/// discovered by reflection, so parsing costs no protocol-conformance scans
/// (docs/performance.md says why that matters at start-up).
public struct Option: Sendable {
    public enum Kind: Sendable {
        /// `--name VALUE` or `--name=VALUE`; the last one given wins.
        case single
        /// Like `single`, but every occurrence is kept, in order.
        case repeated
        /// `--name`, no value.
        case flag
    }

    /// What a value must look like; checked while parsing, so a bad one is a
    /// usage error that names the option.
    public enum Value: Sendable {
        case text
        /// A whole number, optionally negative (`--cpus=-3` is parsed and then refused by range).
        case integer
        /// A whole number of at least 0.
        case unsigned
        /// Anything `accepts` returns true for; `expected` ends the error: "invalid --x 'v': give <expected>".
        case custom(expected: String, accepts: @Sendable (String) -> Bool)
    }

    /// Without the leading dashes: "kernel" for `--kernel`.
    public let name: String
    /// A one-letter spelling (`-U`), if any.
    public let short: Character?
    public let kind: Kind
    public let value: Value
    /// Shown as `<valueName>` in usage and help; the option's name when not given.
    public let valueName: String
    public let help: String
    /// Returned when the option is not given, and shown as "(default: …)".
    public let defaultValue: String?
    /// Missing from the command line → usage error.
    public let isRequired: Bool

    /// A valued option (`--name VALUE`).
    public static func option(_ name: String, value valueName: String? = nil, _ value: Value = .text,
                              default defaultValue: String? = nil, required: Bool = false,
                              help: String) -> Option {
        Option(name: name, short: nil, kind: .single, value: value, valueName: valueName ?? name, help: help,
               defaultValue: defaultValue, isRequired: required)
    }

    /// An option that may be given several times (`--disk A --disk B`).
    public static func repeated(_ name: String, value valueName: String? = nil, _ value: Value = .text,
                                help: String) -> Option {
        Option(name: name, short: nil, kind: .repeated, value: value, valueName: valueName ?? name, help: help,
               defaultValue: nil, isRequired: false)
    }

    /// A flag (`--paused`), optionally with a short spelling (`-U`).
    public static func flag(_ name: String, short: Character? = nil, help: String) -> Option {
        Option(name: name, short: short, kind: .flag, value: .text, valueName: "", help: help,
               defaultValue: nil, isRequired: false)
    }

    /// `--kernel <path>`, `--disk <spec>`, `-U, --force-share`: how usage and errors name it.
    public var synopsis: String {
        kind == .flag ? "--\(name)" : "--\(name) <\(valueName)>"
    }

    /// nil when `text` is acceptable, else the message that refuses it.
    func refusal(of text: String) -> String? {
        let ok: Bool
        let expected: String
        switch value {
        case .text: return nil
        case .integer: ok = Int64(text) != nil; expected = "a whole number"
        case .unsigned: ok = UInt64(text) != nil; expected = "a whole number of 0 or more"
        case .custom(let what, let accepts): ok = accepts(text); expected = what
        }
        return ok ? nil : "invalid --\(name) '\(text)': give \(expected)"
    }
}
