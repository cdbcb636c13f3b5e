#if canImport(Glibc)
import Glibc
#endif

/// A failed KVM call: which operation, and the errno it returned.
public struct KVMError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Calls `body` until it stops failing with EINTR; throws on any other failure.
@discardableResult
func retryingOnInterrupt(_ operation: @autoclosure () -> String, _ body: () -> Int32) throws -> Int32 {
    while true {
        let result = body()
        if result >= 0 { return result }
        if errno == EINTR { continue }
        throw KVMError(operation(), errno: errno)
    }
}
