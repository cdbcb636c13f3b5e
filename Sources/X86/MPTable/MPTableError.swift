/// Why the MP table could not be built or written.
public enum MPTableError: Error, Equatable, CustomStringConvertible {
    /// Zero vCPUs, or more than fit in the 1 KiB at the top of base memory.
    case invalidCPUCount(Int, maximum: Int)

    public var description: String {
        switch self {
        case .invalidCPUCount(let n, let max):
            return "MP table: \(n) vCPUs requested; it describes 1...\(max) (it must fit in 0x9FC00..<0xA0000; the ACPI MADT has no such limit)"
        }
    }
}
