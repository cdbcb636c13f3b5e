import CFileIO
#if canImport(Glibc)
import Glibc
#endif

/// An open image file: positional reads and writes that loop over short transfers
/// and retry EINTR, and a bounce buffer when O_DIRECT is on and a request is not
/// aligned (the kernel refuses unaligned direct I/O).
final class ImageFile {
    private(set) var fd: Int32
    let path: String
    let readOnly: Bool
    let direct: Bool
    /// Alignment O_DIRECT needs for buffer address, offset and length (1 when buffered).
    let alignment: Int

    private init(fd: Int32, path: String, readOnly: Bool, direct: Bool) {
        self.fd = fd
        self.path = path
        self.readOnly = readOnly
        self.direct = direct
        // 4 KiB covers both 512-byte and 4 KiB logical-sector devices.
        self.alignment = direct ? 4096 : 1
    }

    /// Opens `path`; `create` makes a new file and fails if it exists.
    static func open(_ path: String, readOnly: Bool, direct: Bool = false, create: Bool = false) throws -> ImageFile {
        var flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
        if direct { flags |= cfileio_o_direct_flag() }
        if create { flags |= O_CREAT | O_EXCL }
        let fd = Glibc.open(path, flags, 0o644)
        guard fd >= 0 else {
            let e = errno
            if e == EINVAL && direct {
                throw StorageError(.unsupportedFeature, "O_DIRECT is not supported by this file system", path: path, errno: e)
            }
            throw StorageError.system("open", path: path, errno: e)
        }
        return ImageFile(fd: fd, path: path, readOnly: readOnly, direct: direct)
    }

    deinit { close() }

    /// Closes the descriptor (dropping the image locks). Later calls fail with EBADF.
    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Current length of the file.
    func size() throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StorageError.system("fstat", path: path) }
        return UInt64(max(0, st.st_size))
    }

    /// True when `offset`, `count` and `address` all meet the O_DIRECT alignment.
    func isAligned(_ address: UnsafeRawPointer?, _ count: Int, _ offset: UInt64) -> Bool {
        guard direct else { return true }
        let a = UInt(bitPattern: address)
        let m = alignment - 1
        return a & UInt(m) == 0 && count & m == 0 && offset & UInt64(m) == 0
    }

    /// Reads exactly `buffer.count` bytes at `offset`; bytes past end of file read as zeroes.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        guard buffer.count > 0 else { return }
        guard offset <= UInt64(Int64.max) - UInt64(buffer.count) else {
            throw StorageError(.outOfBounds, "file offset \(offset) too large", path: path)
        }
        if !isAligned(buffer.baseAddress, buffer.count, offset) {
            return try bounced(offset: offset, count: buffer.count) { bounce, delta in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: bounce[delta ..< delta + buffer.count]))
            }
        }
        try readRaw(into: buffer, at: offset)
    }

    private func readRaw(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.system("pread", path: path)
            }
            if n == 0 { // end of file: a sparse tail
                memset(buffer.baseAddress! + done, 0, buffer.count - done)
                return
            }
            done += n
        }
    }

    /// Writes all of `buffer` at `offset`.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        guard buffer.count > 0 else { return }
        guard !readOnly else { throw StorageError(.readOnly, "image file is opened read-only", path: path) }
        guard offset <= UInt64(Int64.max) - UInt64(buffer.count) else {
            throw StorageError(.outOfBounds, "file offset \(offset) too large", path: path)
        }
        if !isAligned(buffer.baseAddress, buffer.count, offset) {
            // Read-modify-write of the aligned blocks around the request.
            return try bounced(offset: offset, count: buffer.count, write: true) { bounce, delta in
                UnsafeMutableRawBufferPointer(rebasing: bounce[delta ..< delta + buffer.count]).copyMemory(from: buffer)
            }
        }
        try writeRaw(buffer, at: offset)
    }

    private func writeRaw(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.system("pwrite", path: path)
            }
            done += n
        }
    }

    private func bounced(offset: UInt64, count: Int, write: Bool = false,
                         _ body: (UnsafeMutableRawBufferPointer, Int) -> Void) throws {
        let a = UInt64(alignment)
        let start = offset / a * a
        let end = (offset + UInt64(count) + a - 1) / a * a
        let bounce = try AlignedBuffer(count: Int(end - start), alignment: alignment)
        try readRaw(into: bounce.bytes, at: start)
        body(bounce.bytes, Int(offset - start))
        if write { try writeRaw(UnsafeRawBufferPointer(bounce.bytes), at: start) }
    }

    /// Writes zeroes over the range, deallocating it (punch hole) when the file system can.
    func zeroRange(at offset: UInt64, length: UInt64, punch: Bool = true) throws {
        guard length > 0 else { return }
        guard !readOnly else { throw StorageError(.readOnly, "image file is opened read-only", path: path) }
        if punch, cfileio_fallocate(fd, 0x01 | 0x02 /* KEEP_SIZE | PUNCH_HOLE */, Int64(offset), Int64(length)) == 0 { return }
        let chunk = 1 << 20
        let zeroes = try AlignedBuffer(count: chunk, alignment: max(alignment, 8))
        var done: UInt64 = 0
        while done < length {
            let n = Int(min(UInt64(chunk), length - done))
            try write(UnsafeRawBufferPointer(rebasing: zeroes.bytes[0 ..< n]), at: offset + done)
            done += UInt64(n)
        }
    }

    /// fdatasync: makes written data (and the size needed to read it) durable.
    func sync() throws {
        while fdatasync(fd) != 0 {
            if errno == EINTR { continue }
            throw StorageError.system("fdatasync", path: path)
        }
    }

    func truncate(to size: UInt64) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw StorageError.system("ftruncate", path: path) }
    }
}

/// A zero-filled heap buffer with the alignment O_DIRECT needs. Frees itself.
final class AlignedBuffer {
    let bytes: UnsafeMutableRawBufferPointer

    init(count: Int, alignment: Int = 4096) throws {
        var p: UnsafeMutableRawPointer?
        guard count >= 0, posix_memalign(&p, max(alignment, MemoryLayout<UInt64>.alignment), max(count, 1)) == 0, let p else {
            throw StorageError(.io, "cannot allocate a \(count)-byte buffer", errno: ENOMEM)
        }
        memset(p, 0, max(count, 1))
        bytes = UnsafeMutableRawBufferPointer(start: p, count: count)
    }

    deinit { free(bytes.baseAddress) }
}
