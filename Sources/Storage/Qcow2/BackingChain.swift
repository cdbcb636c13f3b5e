#if canImport(Glibc)
import Glibc
#endif

/// The files already open above a backing file, by (device, inode): opening a file
/// that is already in the chain is a loop, and chains deeper than `maxDepth` are
/// refused (each level costs an fd and a lookup per read).
struct BackingChain {
    static let maxDepth = 16
    private(set) var identities: [(dev: UInt64, ino: UInt64)] = []
    private(set) var paths: [String] = []

    /// The chain that starts at `top`.
    init(top: String) throws {
        try add(top)
    }

    /// An empty chain (for an image being created).
    init() {}

    /// Records `path` as the next file down, or throws `.backingChain`.
    mutating func add(_ path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let e = errno
            throw StorageError(.backingChain, "cannot open backing file '\(path)': \(String(cString: strerror(e)))",
                               path: paths.first ?? path, errno: e)
        }
        let id = (dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
        if identities.contains(where: { $0 == id }) {
            throw StorageError(.backingChain, "backing chain loops: \((paths + [path]).joined(separator: " -> "))", path: paths.first)
        }
        guard identities.count <= BackingChain.maxDepth else {
            throw StorageError(.backingChain, "backing chain is deeper than \(BackingChain.maxDepth) files", path: paths.first)
        }
        identities.append(id)
        paths.append(path)
    }

    /// A backing file name as stored in an image, resolved like QEMU does: relative
    /// names are relative to the directory of the image that names them.
    static func resolve(_ name: String, relativeTo image: String) -> String {
        if name.hasPrefix("/") { return name }
        guard let slash = image.lastIndex(of: "/") else { return name }
        return String(image[...slash]) + name
    }
}

extension DiskImageOpener {
    /// Opens the backing file `name` of `image` read-only, continuing `chain`.
    static func openBacking(name: String, format: String?, of image: String, chain: BackingChain) throws -> DiskImage {
        let path = BackingChain.resolve(name, relativeTo: image)
        var chain = chain
        try chain.add(path)
        let file: ImageFile
        do {
            file = try ImageFile.open(path, readOnly: true)
        } catch let e as StorageError {
            throw StorageError(.backingChain, "cannot open backing file '\(path)': \(e.context)", path: image, errno: e.errno)
        }
        try ImageLock.acquire(file, writable: false)
        let fmt: DiskFormat
        switch format {
        case nil: fmt = try detectFormat(file)
        case "raw"?: fmt = .raw
        case "qcow2"?: fmt = .qcow2
        case let other?:
            throw StorageError(.unsupportedFeature, "backing file format '\(other)'", path: image)
        }
        switch fmt {
        case .raw: return try RawImage(file: file)
        case .qcow2: return try Qcow2Image(file: file, chain: chain)
        }
    }
}
