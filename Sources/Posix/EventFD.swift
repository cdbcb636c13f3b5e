import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// An eventfd owned for its lifetime: a counter the kernel can wait on, used for
/// wake-ups (event loop, VM stop), queue notifications (ioeventfd), interrupts
/// (irqfd) and disk completions. Non-blocking and close-on-exec.
public final class EventFD: Sendable {
    public let fileDescriptor: Int32

    /// - Parameter purpose: named in the error if the kernel refuses.
    public init(_ purpose: String = "eventfd") throws {
        let fd = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard fd >= 0 else { throw SystemCallError("eventfd (\(purpose))", errno: errno) }
        fileDescriptor = fd
    }

    deinit { close(fileDescriptor) }

    /// Adds `count` to the counter, making the fd readable. Async-signal-safe
    /// (one write); a full counter (EAGAIN) already means "readable".
    public func signal(_ count: UInt64 = 1) {
        var value = count
        _ = write(fileDescriptor, &value, 8)
    }

    /// Reads and resets the counter; nil when it was zero.
    @discardableResult
    public func consume() -> UInt64? {
        var value: UInt64 = 0
        return read(fileDescriptor, &value, 8) == 8 ? value : nil
    }
}
