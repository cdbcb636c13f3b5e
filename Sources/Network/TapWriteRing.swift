import CTapRing
#if canImport(Glibc)
import Glibc
#endif

/// Many frames written to a TAP with one system call: an io_uring that can do
/// nothing but `writev` to that TAP (its restrictions are registered before it
/// is enabled, so a hijacked device thread cannot use it to get around its
/// seccomp filter). Why: on this kind of host one `write` system call costs
/// about as much as a sixth of the kernel's work for the frame it carries
/// (docs/virtio.md, "Transmit: many frames per system call").
///
/// Writes leave in the order they were queued (the TAP is non-blocking, so the
/// kernel runs each at once, see `ctapring_open`). Not thread-safe: one device
/// thread at a time uses it.
public final class TapWriteRing {
    /// Frames queued before `submitAndWait` must run.
    public static let capacity = 32

    private let ring: OpaquePointer

    /// Fails (with the reason) where io_uring or its restrictions are missing or
    /// refused, or `fileDescriptor` is blocking: the caller writes frame by frame.
    public init(fileDescriptor: Int32) throws {
        guard let ring = ctapring_open(fileDescriptor, UInt32(Self.capacity)) else {
            throw TapError.system(operation: "io_uring set-up", name: "fd \(fileDescriptor)", errno: errno)
        }
        self.ring = ring
    }

    deinit { ctapring_close(ring) }

    /// Queues one frame. `iovecs` and what they point to must stay valid until
    /// `submitAndWait` returns. False when `capacity` frames are already queued.
    public func queue(_ iovecs: UnsafePointer<iovec>, count: Int, tag: UInt64) -> Bool {
        ctapring_queue_writev(ring, iovecs, UInt32(count), tag) == 0
    }

    /// Writes everything queued and waits for it; the results are `reap()`'s. On a
    /// throw the results reaped name the frames that went out: stop using the ring.
    public func submitAndWait() throws {
        if ctapring_submit_and_wait(ring) < 0 {
            throw TapError.system(operation: "io_uring_enter", name: "ring", errno: errno)
        }
    }

    /// One finished write: its tag and the bytes written, or -errno.
    public func reap() -> (tag: UInt64, result: Int32)? {
        var tag: UInt64 = 0
        var result: Int32 = 0
        return ctapring_reap(ring, &tag, &result) == 1 ? (tag, result) : nil
    }
}
