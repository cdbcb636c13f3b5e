#if canImport(Glibc)
import Glibc
#endif

/// Opens image files: detects the format, takes the image lock, builds the backing chain.
public enum DiskImageOpener {
    /// Opens `path` as `format` (detected from the qcow2 magic when nil).
    ///
    /// The file is locked the way QEMU locks it: a writable open fails with
    /// `.locked` if any other open (Skiff or QEMU, this process or another) has it
    /// open for writing or refuses to share it, and a read-only open fails if
    /// someone writes it. Backing files are opened read-only.
    /// - Parameter direct: open with O_DIRECT (bypass the host page cache).
    public static func open(path: String, format: DiskFormat? = nil, readOnly: Bool = false,
                            direct: Bool = false) throws -> DiskImage {
        let file = try ImageFile.open(path, readOnly: readOnly, direct: direct)
        try ImageLock.acquire(file, writable: !readOnly)
        let detected = try format ?? detectFormat(file)
        switch detected {
        case .raw:
            return try RawImage(file: file, formatWasProbed: format == nil)
        case .qcow2:
            return try Qcow2Image(file: file, chain: BackingChain(top: path))
        }
    }

    /// Releases the lock of `image`'s own file (not its backing files, which
    /// stay read-locked and shareable) for a migration's switch-over: call only
    /// after the last write and `flush()`; the image must not be written until
    /// `retakeLock` succeeds.
    public static func releaseLock(of image: DiskImage) throws {
        guard let file = topFile(image) else { return }
        try ImageLock.release(file)
    }

    /// Takes the lock back as the image was opened (`.locked` if another open took it meanwhile).
    public static func retakeLock(of image: DiskImage) throws {
        guard let file = topFile(image) else { return }
        try ImageLock.acquire(file, writable: !image.isReadOnly)
    }

    private static func topFile(_ image: DiskImage) -> ImageFile? {
        (image as? RawImage)?.file ?? (image as? Qcow2Image)?.file
    }

    /// The format of the image at `path`, from its first bytes.
    public static func detectFormat(path: String) throws -> DiskFormat {
        let file = try ImageFile.open(path, readOnly: true)
        return try detectFormat(file)
    }

    static func detectFormat(_ file: ImageFile) throws -> DiskFormat {
        var head = [UInt8](repeating: 0, count: 4)
        if try file.size() < 4 { return .raw }
        try head.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        return head == Qcow2Header.magicBytes ? .qcow2 : .raw
    }
}
