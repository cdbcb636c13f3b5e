import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// Copies an image file so that the cost follows the data it holds, not its
/// size: a reflink (FICLONE: no data copied, blocks shared copy-on-write) where
/// the file system has them (XFS, Btrfs), else only the ranges `SEEK_DATA` /
/// `SEEK_HOLE` report as data, leaving holes as holes. Used by snapshots to
/// freeze a disk's top layer.
public enum SparseFileCopy {
    /// How a copy was made and what it cost.
    public struct Result: Sendable, Equatable {
        public var reflinked: Bool
        /// Bytes read and written (0 for a reflink).
        public var bytesCopied: UInt64
        public var size: UInt64
    }

    /// _IOW(0x94, 9, int)
    static let ficlone: UInt = 0x4004_9409

    /// Copies `source` to `destination`, which must not exist; the copy is
    /// fsynced. On failure the destination is removed.
    public static func copy(from source: String, to destination: String) throws -> Result {
        let input = Glibc.open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw StorageError.system("open", path: source) }
        defer { Glibc.close(input) }
        let output = Glibc.open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw StorageError.system("create", path: destination) }
        do {
            var st = stat()
            guard fstat(input, &st) == 0 else { throw StorageError.system("fstat", path: source) }
            let size = UInt64(st.st_size)
            var result = Result(reflinked: false, bytesCopied: 0, size: size)
            if ckvm_ioctl_value(output, ficlone, UInt(input)) == 0 {
                result.reflinked = true
            } else {
                result.bytesCopied = try copyData(input, output, size: size, source: source, destination: destination)
            }
            guard fsync(output) == 0 else { throw StorageError.system("fsync", path: destination) }
            Glibc.close(output)
            return result
        } catch {
            Glibc.close(output)
            unlink(destination)
            throw error
        }
    }

    /// The data ranges, 1 MiB at a time; the file is sized first so trailing holes stay holes.
    private static func copyData(_ input: Int32, _ output: Int32, size: UInt64, source: String,
                                 destination: String) throws -> UInt64 {
        guard ftruncate(output, off_t(size)) == 0 else { throw StorageError.system("ftruncate", path: destination) }
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buffer.deallocate() }
        var copied: UInt64 = 0
        var position = off_t(0)
        while UInt64(position) < size {
            let start = lseek(input, position, 3)  // SEEK_DATA (not exported by Glibc here)
            if start < 0 {
                if errno == ENXIO { break }  // only a hole remains
                throw StorageError.system("SEEK_DATA", path: source)
            }
            var end = lseek(input, start, 4)  // SEEK_HOLE
            if end < 0 { end = off_t(size) }
            var at = start
            while at < end {
                let want = min(chunk, Int(end - at))
                let n = pread(input, buffer.baseAddress, want, at)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else {
                    if n == 0 { break }  // the file shrank under us: what is left reads as zeros
                    throw StorageError.system("read", path: source)
                }
                var done = 0
                while done < n {
                    let w = pwrite(output, buffer.baseAddress! + done, n - done, at + off_t(done))
                    if w < 0, errno == EINTR { continue }
                    guard w > 0 else { throw StorageError.system("write", path: destination) }
                    done += w
                }
                at += off_t(n)
                copied += UInt64(n)
            }
            position = end
        }
        return copied
    }
}
