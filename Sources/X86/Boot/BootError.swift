/// Why a kernel, initrd or command line could not be loaded.
public enum BootError: Error, Equatable, CustomStringConvertible {
    case notAKernel(String)
    case unsupportedKernel(String)
    case doesNotFit(String)
    case commandLineTooLong(length: Int, maximum: Int)
    case invalidCommandLine(String)

    public var description: String {
        switch self {
        case .notAKernel(let why): return "not a kernel image: \(why)"
        case .unsupportedKernel(let why): return "unsupported kernel: \(why)"
        case .doesNotFit(let why): return "does not fit in guest memory: \(why)"
        case .commandLineTooLong(let n, let max): return "kernel command line is \(n) bytes; the limit is \(max - 1)"
        case .invalidCommandLine(let why): return "invalid kernel command line: \(why)"
        }
    }
}
