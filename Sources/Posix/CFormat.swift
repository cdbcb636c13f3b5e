#if canImport(Glibc)
import Glibc
#endif

extension String {
    /// C's printf formatting (what Foundation's `String(format:)` did for numbers):
    /// `String(cFormat: "%.1f ms", x)`. Numbers only: C has no `%@`; interpolate strings.
    /// The C locale is in force (Skiff never calls setlocale), so the decimal point is '.'.
    public init(cFormat format: String, _ arguments: CVarArg...) {
        var buffer = [CChar](repeating: 0, count: 256)
        // A va_list is consumed by one vsnprintf, so a longer result formats again.
        let needed = Int(withVaList(arguments) { vsnprintf(&buffer, buffer.count, format, $0) })
        if needed >= buffer.count {
            buffer = [CChar](repeating: 0, count: needed + 1)
            _ = withVaList(arguments) { vsnprintf(&buffer, buffer.count, format, $0) }
        }
        self = String(decoding: buffer.prefix(Swift.max(0, needed)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
