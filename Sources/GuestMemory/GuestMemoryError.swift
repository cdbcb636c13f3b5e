/// Why a guest memory access was refused. Every guest-supplied address and length
/// goes through these checks, so a hostile guest gets an error, not a host crash.
public enum GuestMemoryError: Error, Equatable, CustomStringConvertible {
    /// No RAM region contains this address.
    case invalidAddress(GuestAddress)
    /// The range starts in RAM but runs past the end of its region (or wraps).
    case rangeOutOfBounds(GuestAddress, length: UInt64)
    /// The regions handed to `GuestMemory` overlap, are empty or unaligned.
    case invalidLayout(String)
    /// A host call (memfd_create, ftruncate, mmap) failed.
    case hostFailure(operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .invalidAddress(let a): return "guest address \(a) is not in guest RAM"
        case .rangeOutOfBounds(let a, let n): return "guest range \(a)+\(n) runs outside guest RAM"
        case .invalidLayout(let why): return "invalid guest memory layout: \(why)"
        case .hostFailure(let op, let e): return "\(op) failed: errno \(e)"
        }
    }
}
