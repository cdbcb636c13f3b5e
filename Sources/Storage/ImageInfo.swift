#if canImport(Glibc)
import Glibc
#endif

/// What `skiff image info` shows about an image and each file of its backing chain.
public struct ImageInfo: Sendable {
    public var path: String
    public var format: DiskFormat
    public var virtualSize: UInt64
    /// Bytes the file occupies on the host (sparse files use less than their length).
    public var allocatedBytes: UInt64
    public var clusterSize: UInt64?
    public var qcow2Version: Int?
    /// The backing file name as stored in the image, and its recorded format.
    public var backingFile: String?
    public var backingFormat: String?
    /// Info for each backing file, nearest first.
    public var chain: [ImageInfo] = []

    /// Reads the info of `path` (opened read-only). `forceShare` skips the image
    /// lock, so an image a running VM writes can still be inspected (values may be stale).
    public static func read(path: String, forceShare: Bool = false) throws -> ImageInfo {
        let file = try ImageFile.open(path, readOnly: true)
        if !forceShare { try ImageLock.acquire(file, writable: false) }
        let image: DiskImage
        switch try DiskImageOpener.detectFormat(file) {
        case .raw: image = try RawImage(file: file)
        case .qcow2: image = try Qcow2Image(file: file, chain: BackingChain(top: path))
        }
        defer { try? image.close() }
        var info = ImageInfo(image)
        var next = (image as? Qcow2Image)?.backing
        while let b = next {
            info.chain.append(ImageInfo(b))
            next = (b as? Qcow2Image)?.backing
        }
        return info
    }

    init(_ image: DiskImage) {
        path = image.path
        format = image.format
        virtualSize = image.virtualSize
        if let q = image as? Qcow2Image {
            allocatedBytes = q.allocatedBytes
            clusterSize = q.clusterSize
            qcow2Version = q.version
            backingFile = q.backingFileName
            backingFormat = q.backingFormatName ?? q.backing?.format.rawValue
        } else {
            allocatedBytes = (image as? RawImage)?.allocatedBytes ?? 0
        }
    }

    /// Human-readable, in the spirit of `qemu-img info`.
    public var formatted: String {
        var lines: [String] = []
        func describe(_ i: ImageInfo) {
            lines.append("image: \(i.path)")
            lines.append("file format: \(i.format.rawValue)")
            lines.append("virtual size: \(ByteSize(bytes: i.virtualSize).humanReadable) (\(i.virtualSize) bytes)")
            lines.append("disk size: \(ByteSize(bytes: i.allocatedBytes).humanReadable)")
            if let cs = i.clusterSize { lines.append("cluster_size: \(cs)") }
            if let v = i.qcow2Version { lines.append("compat: \(v == 3 ? "1.1" : "0.10")") }
            if let b = i.backingFile {
                lines.append("backing file: \(b)")
                if let f = i.backingFormat { lines.append("backing file format: \(f)") }
            }
        }
        describe(self)
        if !chain.isEmpty {
            lines.append("backing chain: " + ([path] + chain.map(\.path)).joined(separator: " -> "))
            for c in chain {
                lines.append("")
                describe(c)
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
