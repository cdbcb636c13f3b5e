#if canImport(Glibc)
import Glibc
#endif

/// Advisory locking of an image file, byte-compatible with QEMU's scheme so that
/// Skiff and QEMU/qemu-img see each other: open-file-description (OFD) read locks on
/// "permission" bytes 100+n (this opener uses permission n) and "unshared" bytes
/// 200+n (this opener does not let others use permission n). A writer holds
/// write-permission and refuses to share it; a reader refuses to share writing.
/// OFD locks belong to the open file, so they go away when its fd is closed and
/// two opens inside one process conflict like two processes do.
enum ImageLock {
    private static let F_OFD_GETLK: Int32 = 36
    private static let F_OFD_SETLK: Int32 = 37
    private static let permBase: Int64 = 100
    private static let sharedBase: Int64 = 200
    private static let read: Int64 = 0, write: Int64 = 1, resize: Int64 = 3

    /// Takes the locks for a reader or a writer on `file`, or throws `.locked`.
    static func acquire(_ file: ImageFile, writable: Bool) throws {
        // Bytes we hold (shared locks), then bytes that must not be held by anyone else.
        let hold: [Int64]
        let mustBeFree: [(Int64, String)]
        if writable {
            hold = [permBase + read, permBase + write, permBase + resize, sharedBase + write, sharedBase + resize]
            mustBeFree = [(permBase + write, "it is open for writing elsewhere"),
                          (permBase + resize, "it is open for resizing elsewhere"),
                          (sharedBase + write, "another user does not allow writing to it"),
                          (sharedBase + resize, "another user does not allow resizing it")]
        } else {
            hold = [permBase + read, sharedBase + write]
            mustBeFree = [(permBase + write, "it is open for writing elsewhere")]
        }
        for byte in hold {
            var fl = flock()
            fl.l_type = Int16(F_RDLCK)
            fl.l_whence = Int16(SEEK_SET)
            fl.l_start = off_t(byte)
            fl.l_len = 1
            if fcntl(file.fd, F_OFD_SETLK, &fl) != 0 {
                let e = errno
                if e == EAGAIN || e == EACCES {
                    throw StorageError(.locked, "cannot lock the image: it is open for writing elsewhere", path: file.path, errno: e)
                }
                // File systems without locking (some network mounts): carry on unlocked, as QEMU does.
                if e == ENOLCK || e == EINVAL || e == EOPNOTSUPP { return }
                throw StorageError.system("fcntl(F_OFD_SETLK)", path: file.path, errno: e)
            }
        }
        for (byte, why) in mustBeFree {
            var fl = flock()
            fl.l_type = Int16(F_WRLCK)
            fl.l_whence = Int16(SEEK_SET)
            fl.l_start = off_t(byte)
            fl.l_len = 1
            guard fcntl(file.fd, F_OFD_GETLK, &fl) == 0 else {
                throw StorageError.system("fcntl(F_OFD_GETLK)", path: file.path)
            }
            if fl.l_type != Int16(F_UNLCK) {
                throw StorageError(.locked, "image is in use: \(why)", path: file.path, errno: EAGAIN)
            }
        }
    }

    /// Drops every lock byte this open holds (permissions and unshared bits),
    /// so another open may take the image for writing: a migration's hand-over.
    static func release(_ file: ImageFile) throws {
        var fl = flock()
        fl.l_type = Int16(F_UNLCK)
        fl.l_whence = Int16(SEEK_SET)
        fl.l_start = off_t(permBase)
        fl.l_len = off_t(sharedBase + 100 - permBase)
        if fcntl(file.fd, F_OFD_SETLK, &fl) != 0 {
            let e = errno
            if e == ENOLCK || e == EINVAL || e == EOPNOTSUPP { return }
            throw StorageError.system("fcntl(F_OFD_SETLK, F_UNLCK)", path: file.path, errno: e)
        }
    }
}
