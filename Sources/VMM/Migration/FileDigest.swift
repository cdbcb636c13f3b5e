import Crypto
import Migration
#if canImport(Glibc)
import Glibc
#endif

/// The identity of a file below a disk's top layer, as the source describes
/// it and the destination checks it before a migration without shared
/// storage: absolute path, format, size and SHA-256 of the bytes. Reading the
/// whole file costs its size once per migration at each end; a changed
/// modification time alone (a copy made without `-p`) does not matter.
enum FileDigest {
    static func layer(path: String, format: String) throws -> MigrationDiskList.Layer {
        let (size, digest) = try sha256(path: path)
        return MigrationDiskList.Layer(path: path, format: format, size: size, sha256: digest)
    }

    /// Size and SHA-256 (hex) of the file at `path`.
    static func sha256(path: String) throws -> (size: UInt64, hex: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw MigrationError(.failed, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var size: UInt64 = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw MigrationError(.failed, "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            size += UInt64(n)
        }
        return (size, hasher.finalize().map { String(cFormat: "%02x", $0) }.joined())
    }
}
