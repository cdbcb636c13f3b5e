extension Qcow2Image {
    /// Rewrites the backing file name stored in the header of the qcow2 image at
    /// `path` (not open anywhere else), like `qemu-img rebase -u`: no data is
    /// touched. Used on a snapshot's frozen copy of a top layer, whose relative
    /// backing name would otherwise resolve from the wrong directory.
    ///
    /// The name lives in cluster 0 after the header extensions (where QEMU and
    /// Skiff put it); the new one must fit there, over zeros, or this refuses.
    public static func setBackingFileName(path: String, to name: String) throws {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 1023 else {
            throw StorageError(.invalidArgument, "backing file name is empty or longer than 1023 bytes", path: path)
        }
        let file = try ImageFile.open(path, readOnly: false)
        defer { file.close() }
        try ImageLock.acquire(file, writable: true)
        let fileSize = try file.size()
        var start = [UInt8](repeating: 0, count: Int(min(fileSize, 1 << 21)))
        try start.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }
        let header = try Qcow2Header.parse(start, fileSize: fileSize, path: path)
        guard header.backingFileOffset != 0 else {
            throw StorageError(.invalidArgument, "image has no backing file to rename", path: path)
        }
        let offset = Int(header.backingFileOffset)  // parse checked it lies in cluster 0
        let oldEnd = offset + Int(header.backingFileSize)
        let newEnd = offset + bytes.count
        guard UInt64(newEnd) <= header.clusterSize, newEnd <= start.count,
              start[oldEnd ..< max(oldEnd, newEnd)].allSatisfy({ $0 == 0 }) else {
            throw StorageError(.unsupportedFeature, "no room in the header for the backing file name '\(name)'", path: path)
        }
        var area = [UInt8](repeating: 0, count: max(oldEnd, newEnd) - offset)
        area.replaceSubrange(0 ..< bytes.count, with: bytes)
        try area.withUnsafeBytes { try file.write($0, at: UInt64(offset)) }
        var size = [UInt8](repeating: 0, count: 4)
        size.putBE32(UInt32(bytes.count), at: 0)
        try size.withUnsafeBytes { try file.write($0, at: 16) }
        try file.sync()
    }
}
