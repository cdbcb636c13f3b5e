/// Why the AML writer refused to encode something.
public enum AMLError: Error, Equatable, CustomStringConvertible {
    /// Not a NameSeg (1–4 characters of `A-Z`, `0-9`, `_`, not starting with a digit)
    /// or a path of them.
    case invalidName(String)
    /// AML strings are 7-bit ASCII without NUL.
    case invalidString(String)
    /// Not an EISA id: three upper-case letters and four hex digits.
    case invalidEISAID(String)
    /// A package or length larger than its AML encoding can hold.
    case tooLarge(what: String, size: Int)

    public var description: String {
        switch self {
        case .invalidName(let name): return "AML: '\(name)' is not a valid name"
        case .invalidString(let text): return "AML: string '\(text)' must be ASCII without NUL"
        case .invalidEISAID(let id): return "AML: '\(id)' is not an EISA id like PNP0501"
        case .tooLarge(let what, let size): return "AML: \(what) of \(size) is too large to encode"
        }
    }
}
