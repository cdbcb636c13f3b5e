#if canImport(Glibc)
import Glibc
#endif

/// Why a storage operation failed: a stable `kind` that callers switch on (the
/// virtio-blk device maps it to a status), plus context for the human reading it.
/// Image files are hostile input, so every check on file data ends up here rather
/// than in a trap.
public struct StorageError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The stable classification of a failure.
    public enum Kind: String, Sendable, Equatable {
        /// A host call failed (`errno` says why).
        case io
        /// The file is not an image of the expected format (bad magic, version, header).
        case invalidFormat
        /// A valid image that uses something Skiff does not implement.
        case unsupportedFeature
        /// Image metadata is inconsistent or points where it must not.
        case corruptImage
        /// A request outside the virtual disk, or a file offset outside the image.
        case outOfBounds
        /// Another process holds the image open in a conflicting mode.
        case locked
        /// A write to an image opened read-only.
        case readOnly
        /// The backing chain is broken: a loop, too deep, or a missing file.
        case backingChain
        /// A caller error: bad size, bad option.
        case invalidArgument
    }

    public let kind: Kind
    /// What was being done and what was wrong, e.g. "L2 entry 12 points past end of file".
    public let context: String
    /// The image file concerned, when known.
    public let path: String?
    /// The errno of a failed host call (`kind == .io`, `.locked`).
    public let errno: Int32?

    public init(_ kind: Kind, _ context: String, path: String? = nil, errno: Int32? = nil) {
        self.kind = kind
        self.context = context
        self.path = path
        self.errno = errno
    }

    /// A failed host call: `operation` names the call, errno is read from the thread.
    static func system(_ operation: String, path: String? = nil, errno e: Int32 = Glibc.errno) -> StorageError {
        StorageError(.io, "\(operation) failed: \(String(cString: strerror(e)))", path: path, errno: e)
    }

    /// The same error with `path` filled in when it was not known where it was raised.
    func at(_ path: String) -> StorageError {
        self.path == nil ? StorageError(kind, context, path: path, errno: errno) : self
    }

    public var description: String {
        var s = "\(kind.rawValue): \(context)"
        if let path { s = "\(path): " + s }
        return s
    }
}
