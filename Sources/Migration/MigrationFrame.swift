import Posix

/// The framing of the migration stream. Every message is a 16-byte header and
/// a payload:
///
///     offset  size  field
///          0     2  kind (MigrationFrame.Kind), little-endian
///          2     2  flags, zero
///          4     4  reserved, zero
///          8     8  payload length n, little-endian
///         16     n  payload
///
/// Each kind has its own payload limit, checked before anything is read or
/// allocated, so a hostile length cannot make the receiver allocate or wait
/// for gigabytes.
public enum MigrationFrame {
    public static let headerSize = 16

    public enum Kind: UInt16, Sendable, CaseIterable {
        // Source → destination.
        case start = 1
        case config = 2
        case memory = 3
        case iterationEnd = 4
        case state = 5
        case commit = 6
        case abandon = 7
        /// Protocol 2: the disks sent without shared storage (JSON, `MigrationDiskList`).
        case disks = 8
        /// Protocol 2: one run of a disk's clusters (`DiskRun`).
        case disk = 9
        // Destination → source.
        case accepted = 16
        case ready = 17
        case running = 18
        case refused = 19
        /// Protocol 2, the answer to `config` when some disk is not on shared
        /// storage here: one byte per disk, `MigrationDiskPlan`.
        case diskPlan = 20

        /// The largest payload a frame of this kind may carry.
        public var payloadLimit: UInt64 {
            switch self {
            case .start: return 64
            case .config: return 1 << 20
            case .memory: return UInt64(MemoryRun.headerSize) + UInt64(MemoryRun.maxDataPages) * MemoryRun.pageSize
            case .iterationEnd: return 8
            case .state: return 80 << 20  // StateFile's own limit is 64 MiB of payload
            case .commit: return 1  // 1: run the VM, 0: leave it paused (it was paused at the source)
            case .accepted, .ready, .running: return 0
            case .abandon, .refused: return 4096
            case .disks: return 1 << 20
            case .disk: return UInt64(DiskRun.headerSize) + UInt64(DiskRun.maxDataBytes)
            case .diskPlan: return UInt64(MigrationDiskPlan.maxDisks)
            }
        }
    }

    public struct Header: Equatable, Sendable {
        public var kind: Kind
        public var length: UInt64

        public init(kind: Kind, length: UInt64) {
            self.kind = kind
            self.length = length
        }
    }

    public static func writeHeader(_ kind: Kind, length: UInt64, to stream: ByteStream) throws {
        var bytes = [UInt8](repeating: 0, count: headerSize)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: kind.rawValue.littleEndian, toByteOffset: 0, as: UInt16.self)
            raw.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt64.self)
        }
        try bytes.withUnsafeBytes { try stream.write($0) }
    }

    /// Writes a whole frame with a small payload.
    public static func write(_ kind: Kind, payload: [UInt8] = [], to stream: ByteStream) throws {
        try writeHeader(kind, length: UInt64(payload.count), to: stream)
        try payload.withUnsafeBytes { try stream.write($0) }
    }

    /// Reads and checks a header: known kind, zero flags and reserved bits,
    /// length within the kind's limit.
    public static func readHeader(from stream: ByteStream) throws -> Header {
        var bytes = [UInt8](repeating: 0, count: headerSize)
        try bytes.withUnsafeMutableBytes { try stream.read(into: $0) }
        return try parseHeader(bytes)
    }

    public static func parseHeader(_ bytes: [UInt8]) throws -> Header {
        guard bytes.count == headerSize else { throw MigrationError(.malformed, "a frame header is \(headerSize) bytes") }
        let (rawKind, flags, reserved, length) = bytes.withUnsafeBytes { raw in
            (UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt16.self)),
             UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self)),
             UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
             UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        }
        guard let kind = Kind(rawValue: rawKind) else {
            throw MigrationError(.malformed, "unknown message kind \(rawKind)")
        }
        guard flags == 0, reserved == 0 else {
            throw MigrationError(.malformed, "\(kind) message with flags 0x\(String(flags, radix: 16)) / reserved 0x\(String(reserved, radix: 16))")
        }
        guard length <= kind.payloadLimit else {
            throw MigrationError(.malformed, "\(kind) message of \(length) bytes (at most \(kind.payloadLimit))")
        }
        return Header(kind: kind, length: length)
    }

    /// Reads a payload whose length the header gave (already within its limit).
    public static func readPayload(_ header: Header, from stream: ByteStream) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Int(header.length))
        try bytes.withUnsafeMutableBytes { try stream.read(into: $0) }
        return bytes
    }

    /// Text payloads (refused, abandon): UTF-8, cut to the limit, control characters replaced.
    public static func text(_ message: String) -> [UInt8] {
        let clean = String(message.unicodeScalars.map { $0.value < 0x20 ? " " : Character($0) })
        return Array(clean.utf8.prefix(Int(Kind.refused.payloadLimit)))
    }

    public static func decodeText(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self).unicodeScalars
            .map { $0.value < 0x20 || $0.value == 0x7F ? "?" : String($0) }.joined()
    }
}

/// The payload of a `memory` frame: a run of consecutive guest pages.
///
///     offset  size  field
///          0     8  guest-physical address of the first page (page-aligned)
///          8     4  page count (≥ 1)
///         12     4  encoding: 0 = the pages' bytes follow, 1 = all zero (nothing follows)
///         16     …  count × 4096 bytes (encoding 0 only)
public struct MemoryRun: Equatable, Sendable {
    public static let headerSize = 16
    public static let pageSize: UInt64 = 4096
    /// Pages per data run: 1 MiB frames keep the receiver's reads large and bounded.
    public static let maxDataPages: UInt32 = 256

    public enum Encoding: UInt32, Sendable { case data = 0, zero = 1 }

    public var guestAddress: UInt64
    public var pages: UInt32
    public var encoding: Encoding

    public init(guestAddress: UInt64, pages: UInt32, encoding: Encoding) {
        self.guestAddress = guestAddress
        self.pages = pages
        self.encoding = encoding
    }

    public var byteCount: UInt64 { UInt64(pages) * Self.pageSize }
    public var frameLength: UInt64 { UInt64(Self.headerSize) + (encoding == .data ? byteCount : 0) }

    public func header() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.headerSize)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: guestAddress.littleEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: pages.littleEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: encoding.rawValue.littleEndian, toByteOffset: 12, as: UInt32.self)
        }
        return bytes
    }

    /// Parses a run header and checks it against the frame's length: alignment,
    /// a known encoding, a non-zero count, and a length that is exactly the run.
    /// Whether the pages are guest RAM is the receiver's check (it knows the map).
    public static func parse(_ bytes: [UInt8], frameLength: UInt64) throws -> MemoryRun {
        guard bytes.count == headerSize, frameLength >= UInt64(headerSize) else {
            throw MigrationError(.malformed, "memory message of \(frameLength) bytes, shorter than its run header")
        }
        let (address, pages, rawEncoding) = bytes.withUnsafeBytes { raw in
            (UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
             UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        }
        guard let encoding = Encoding(rawValue: rawEncoding) else {
            throw MigrationError(.malformed, "memory run with unknown encoding \(rawEncoding)")
        }
        guard address % pageSize == 0, pages > 0 else {
            throw MigrationError(.malformed, "memory run at 0x\(String(address, radix: 16)) of \(pages) pages "
                + "(must be page-aligned and non-empty)")
        }
        guard encoding == .zero || pages <= maxDataPages else {
            throw MigrationError(.malformed, "memory run of \(pages) data pages (at most \(maxDataPages))")
        }
        let run = MemoryRun(guestAddress: address, pages: pages, encoding: encoding)
        guard run.frameLength == frameLength else {
            throw MigrationError(.malformed, "memory run of \(pages) \(encoding == .zero ? "zero" : "data") pages "
                + "in a \(frameLength)-byte message (expected \(run.frameLength))")
        }
        return run
    }
}
