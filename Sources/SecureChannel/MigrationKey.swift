import Posix
#if canImport(Glibc)
import Glibc
#endif

/// The pre-shared key both ends of a migration hold: 256 random bits.
///
/// On disk it is one line of 64 hex digits (so a user can copy it by hand),
/// in a file readable by its owner only. Loading refuses a file that group or
/// others may read or write, as ssh refuses such a private key: a key others
/// can read authenticates them too.
public struct MigrationKey: Sendable, Equatable, CustomStringConvertible {
    public static let byteCount = 32

    /// The raw key; the Noise PSK.
    let bytes: [UInt8]

    init(bytes: [UInt8]) {
        precondition(bytes.count == Self.byteCount)
        self.bytes = bytes
    }

    /// Never the key itself, so a stray log line cannot leak it.
    public var description: String { "MigrationKey(256 bits)" }

    /// 256 bits from the OS CSPRNG: Swift's `SystemRandomNumberGenerator`,
    /// which on Linux is getrandom(2) (blocking only until the kernel's pool
    /// is first seeded).
    public static func generate() -> MigrationKey {
        var rng = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        for _ in 0..<byteCount / 8 {
            withUnsafeBytes(of: rng.next() as UInt64) { bytes += $0 }
        }
        return MigrationKey(bytes: bytes)
    }

    /// The file's text: 64 lower-case hex digits and a newline.
    public var fileContents: String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for b in bytes { text += [digits[Int(b >> 4)], digits[Int(b & 15)]] }
        return String(decoding: text, as: UTF8.self) + "\n"
    }

    /// Parses a key file's text: 64 hex digits, surrounding whitespace allowed.
    public init(fileContents text: String) throws {
        let trimmed = Array(text.utf8).drop { Self.isSpace($0) }.reversed().drop { Self.isSpace($0) }.reversed()
        guard trimmed.count == 2 * Self.byteCount else {
            throw MigrationKeyError.Problem.malformed("expected one line of \(2 * Self.byteCount) hex digits, found \(trimmed.count) characters")
        }
        var bytes: [UInt8] = []
        var high: UInt8 = 0
        for (i, c) in trimmed.enumerated() {
            guard let v = Self.hexValue(c) else {
                throw MigrationKeyError.Problem.malformed("character \(i + 1) is not a hex digit")
            }
            if i % 2 == 0 { high = v } else { bytes.append(high << 4 | v) }
        }
        self.init(bytes: bytes)
    }

    private static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

extension MigrationKey {
    /// A key file is tiny; anything much larger is not one.
    static let maxFileSize = 4096

    /// Makes a new key and writes it to `path`, which must not exist (a key is
    /// never overwritten: the other host may hold a copy), with mode 0600.
    @discardableResult
    public static func create(at path: String) throws -> MigrationKey {
        let key = generate()
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let e = errno
            throw e == EEXIST ? MigrationKeyError(path: path, problem: .exists)
                              : MigrationKeyError(path: path, problem: .system(SystemCallError("open", errno: e)))
        }
        defer { close(fd) }
        do {
            // The umask may have taken bits away, never added them; make it exact.
            try retryingOnInterrupt("fchmod") { fchmod(fd, 0o600) }
            let text = Array(key.fileContents.utf8)
            var written = 0
            while written < text.count {
                let n = try text.withUnsafeBytes { buffer in
                    try retryingOnInterrupt("write") { Int32(write(fd, buffer.baseAddress! + written, buffer.count - written)) }
                }
                written += Int(n)
            }
            try retryingOnInterrupt("fsync") { fsync(fd) }
        } catch let e as SystemCallError {
            unlink(path)  // no half-written key left behind
            throw MigrationKeyError(path: path, problem: .system(e))
        }
        return key
    }

    /// Reads the key at `path`, refusing a file group or others can access,
    /// one that is not a regular file, or one that does not hold exactly one key.
    public static func load(from path: String) throws -> MigrationKey {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw MigrationKeyError(path: path, problem: .system(SystemCallError("open", errno: errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw MigrationKeyError(path: path, problem: .system(SystemCallError("fstat", errno: errno))) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw MigrationKeyError(path: path, problem: .notRegularFile) }
        let mode = st.st_mode & 0o7777
        guard mode & 0o077 == 0 else { throw MigrationKeyError(path: path, problem: .tooOpen(mode: UInt32(mode))) }
        guard st.st_size <= maxFileSize else {
            throw MigrationKeyError(path: path, problem: .malformed("\(st.st_size) bytes is too large for a key file"))
        }
        var buffer = [UInt8](repeating: 0, count: maxFileSize + 1)
        var filled = 0
        while filled < buffer.count {
            let n: Int32
            do {
                n = try buffer.withUnsafeMutableBytes { b in
                    try retryingOnInterrupt("read") { Int32(read(fd, b.baseAddress! + filled, b.count - filled)) }
                }
            } catch let e as SystemCallError {
                throw MigrationKeyError(path: path, problem: .system(e))
            }
            if n == 0 { break }
            filled += Int(n)
        }
        guard filled <= maxFileSize else {
            throw MigrationKeyError(path: path, problem: .malformed("too large for a key file"))
        }
        do {
            return try MigrationKey(fileContents: String(decoding: buffer[..<filled], as: UTF8.self))
        } catch let problem as MigrationKeyError.Problem {
            throw MigrationKeyError(path: path, problem: problem)
        }
    }
}
