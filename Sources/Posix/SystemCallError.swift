#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which operation (with its arguments where they help),
/// and the errno it left. The one error type for host calls in Skiff's lower
/// layers (KVM, event loop, devices); Storage and Network add their own kinds
/// and wording on top for the user.
public struct SystemCallError: Error, CustomStringConvertible, Equatable, Sendable {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        errno == 0 ? "\(operation) failed" : "\(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Calls `body` until it stops failing with EINTR; throws on any other failure
/// (a negative result), with `errno` captured right after the call.
@discardableResult
public func retryingOnInterrupt(_ operation: @autoclosure () -> String, _ body: () -> Int32) throws -> Int32 {
    while true {
        let result = body()
        if result >= 0 { return result }
        let e = errno
        if e == EINTR { continue }
        throw SystemCallError(operation(), errno: e)
    }
}
