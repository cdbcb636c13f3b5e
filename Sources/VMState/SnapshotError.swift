/// Why a snapshot cannot be written or read: a stable kind to act on, and a
/// message that says which file and which value.
public struct SnapshotError: Error, CustomStringConvertible, Equatable {
    public enum Kind: String, Sendable {
        /// A host call failed (open, read, write, fsync, rename).
        case io
        /// A file the snapshot needs is not there.
        case missingFile
        /// A file ends before its header says it does.
        case truncated
        /// A checksum does not match the bytes: the file was damaged.
        case checksumMismatch
        /// Written by a format version this build does not read.
        case unsupportedVersion
        /// Not a Skiff snapshot (wrong magic or format name).
        case badMagic
        /// Two things that must agree do not (file size vs manifest, memory file
        /// vs memory map, vCPU count vs config).
        case sizeMismatch
        /// A count or size beyond what any real machine has; refused before allocating.
        case limitExceeded
        /// The manifest or state does not decode.
        case malformed
        /// Decoded, but a value is impossible (a block of the wrong size, a bad id).
        case invalidState
        /// Valid, but this host cannot run it (a CPU feature or XSAVE component its KVM lacks).
        case incompatibleHost
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "snapshot (\(kind.rawValue)): \(message)" }
}
