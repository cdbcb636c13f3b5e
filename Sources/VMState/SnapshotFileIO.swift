import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// The few file operations the snapshot container needs, each failing with a
/// `SnapshotError` that names the file. Plain POSIX calls, so sizes are checked
/// with fstat before anything is read and writes are made durable with fsync.
enum SnapshotFileIO {
    /// The size of a regular file, or `.missingFile`.
    static func size(of url: URL) throws -> UInt64 {
        var st = stat()
        guard stat(url.path, &st) == 0 else {
            let e = errno
            if e == ENOENT { throw SnapshotError(.missingFile, "\(url.lastPathComponent) is missing from \(url.deletingLastPathComponent().path)") }
            throw SnapshotError(.io, "stat \(url.path): \(String(cString: strerror(e)))")
        }
        guard st.st_mode & S_IFMT == S_IFREG else { throw SnapshotError(.malformed, "\(url.path) is not a regular file") }
        return UInt64(st.st_size)
    }

    /// The whole file, refused with `.limitExceeded` if larger than `limit` (checked before reading).
    static func read(_ url: URL, limit: Int) throws -> [UInt8] {
        let fd = try openRegularFile(url)
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError("fstat", url) }
        guard st.st_size <= limit else {
            throw SnapshotError(.limitExceeded, "\(url.lastPathComponent) is \(st.st_size) bytes (at most \(limit))")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < bytes.count {
            // SAFETY: reads into the array's own storage, at most the bytes left in it.
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ioError("read", url) }
            if n == 0 { break }  // shrank since fstat
            done += n
        }
        return Array(bytes.prefix(done))
    }

    /// Writes `bytes` to `url` (created, or truncated if there), then fsyncs it.
    static func write(_ bytes: [UInt8], to url: URL) throws {
        let fd = try open(url, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            // SAFETY: writes from the array's own storage, at most the bytes left in it.
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ioError("write", url) }
            done += n
        }
        guard fsync(fd) == 0 else { throw ioError("fsync", url) }
    }

    /// CRC-64 of a whole file, read a MiB at a time (memory files are large).
    static func checksum(of url: URL) throws -> UInt64 {
        let fd = try openRegularFile(url)
        defer { close(fd) }
        var crc = CRC64()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress!, buffer.count)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ioError("read", url) }
            if n == 0 { return crc.checksum }
            // SAFETY: the first n bytes of the buffer were just filled by read(2).
            crc.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    /// fsync on a directory makes the names created in it durable.
    static func syncDirectory(_ url: URL) throws {
        let fd = try open(url, flags: O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw ioError("fsync", url) }
    }

    static func rename(_ from: URL, to: URL) throws {
        guard Glibc.rename(from.path, to.path) == 0 else { throw ioError("rename to \(to.lastPathComponent)", from) }
    }

    /// Opens for reading without blocking (a FIFO planted in a snapshot would
    /// otherwise hang the open) and refuses anything but a regular file.
    private static func openRegularFile(_ url: URL) throws -> Int32 {
        let fd = try open(url, flags: O_RDONLY | O_NONBLOCK)
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let error = ioError("fstat", url)
            close(fd)
            throw error
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw SnapshotError(.malformed, "\(url.path) is not a regular file")
        }
        return fd
    }

    private static func open(_ url: URL, flags: Int32, mode: mode_t = 0) throws -> Int32 {
        while true {
            let fd = Glibc.open(url.path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            let e = errno
            if e == EINTR { continue }
            if e == ENOENT { throw SnapshotError(.missingFile, "\(url.lastPathComponent) is missing from \(url.deletingLastPathComponent().path)") }
            throw SnapshotError(.io, "open \(url.path): \(String(cString: strerror(e)))")
        }
    }

    private static func ioError(_ what: String, _ url: URL) -> SnapshotError {
        SnapshotError(.io, "\(what) \(url.path): \(String(cString: strerror(errno)))")
    }
}
