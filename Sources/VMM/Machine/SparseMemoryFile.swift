import FoundationEssentials
import GuestMemory
import VMState
#if canImport(Glibc)
import Glibc
#endif

/// Writes guest RAM to a snapshot's memory file as a sparse file: the file is
/// sized to all of RAM, but only pages holding a non-zero byte are written, so
/// never-touched (and zeroed) pages stay holes and `du` shows roughly the RAM
/// the guest used.
///
/// Finding the pages to look at depends on the backing:
/// - memfd RAM: SEEK_DATA/SEEK_HOLE on the memfd skip never-touched ranges without
///   touching them (reading a shmem hole through the mapping would allocate it).
/// - privately mapped RAM (a restored VM): the snapshot file it came from cannot
///   say which pages the guest wrote since (those are anonymous copies), so every
///   page is read through the mapping. Correct, but it pulls the whole old memory
///   file through the page cache once.
enum SparseMemoryFile {
    static let pageSize = 4096
    // Linux's values; Glibc exports them only under _GNU_SOURCE, which Swift does not set.
    private static let seekData: Int32 = 3
    private static let seekHole: Int32 = 4

    /// How often `progress` hears of the scan.
    static let progressStep: UInt64 = 16 << 20

    /// Returns the bytes actually written (non-zero pages).
    static func write(_ memory: GuestMemory, to url: URL, progress: SnapshotProgress? = nil) throws -> UInt64 {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ioError("create", url) }
        defer { close(fd) }
        guard ftruncate(fd, off_t(memory.totalSize)) == 0 else { throw ioError("ftruncate", url) }
        var written: UInt64 = 0
        var regionsBefore: UInt64 = 0  // RAM bytes of the regions already done
        for region in memory.regions {
            for extent in try dataExtents(of: region, in: memory) {
                // Holes are "scanned" as they are skipped: progress counts RAM looked at.
                let before = written, base = regionsBefore + extent.lowerBound
                written += try writeNonZeroPages(region, extent: extent, fd: fd, url: url) { done, wrote in
                    progress?.memory(scanned: base + done, written: before + wrote)
                }
            }
            regionsBefore += region.size
            progress?.memory(scanned: regionsBefore, written: written)
        }
        guard fsync(fd) == 0 else { throw ioError("fsync", url) }
        return written
    }

    /// Byte ranges inside `region` (offsets from its start) that may hold data.
    static func dataExtents(of region: GuestMemoryRegion, in memory: GuestMemory) throws -> [Range<UInt64>] {
        guard memory.backing == .memfd else { return [0..<region.size] }
        var extents: [Range<UInt64>] = []
        let end = region.fileOffset + region.size
        var cursor = region.fileOffset
        while cursor < end {
            let data = lseek(memory.fileDescriptor, off_t(cursor), seekData)
            if data < 0 {
                if errno == ENXIO { break }  // nothing but holes from here to the end of the file
                throw SnapshotError(.io, "SEEK_DATA on guest RAM: \(String(cString: strerror(errno)))")
            }
            let start = UInt64(data)
            guard start < end else { break }
            let hole = lseek(memory.fileDescriptor, off_t(start), seekHole)
            guard hole >= 0 else { throw SnapshotError(.io, "SEEK_HOLE on guest RAM: \(String(cString: strerror(errno)))") }
            let stop = min(UInt64(hole), end)
            // The kernel reports at page granularity; round out anyway so no byte is missed.
            let lower = start & ~UInt64(pageSize - 1)
            let upper = min((stop + UInt64(pageSize) - 1) & ~UInt64(pageSize - 1), end)
            extents.append((lower - region.fileOffset)..<(upper - region.fileOffset))
            cursor = upper
        }
        return extents
    }

    /// Writes each run of non-zero pages of `extent` at its file offset.
    /// `report(scanned, written)` is called every `progressStep` bytes of the extent.
    private static func writeNonZeroPages(_ region: GuestMemoryRegion, extent: Range<UInt64>, fd: Int32, url: URL,
                                          report: (UInt64, UInt64) -> Void) throws -> UInt64 {
        let zero = [UInt8](repeating: 0, count: pageSize)
        var written: UInt64 = 0
        var runStart: UInt64? = nil
        var offset = extent.lowerBound
        func flush(_ upTo: UInt64) throws {
            guard let s = runStart else { return }
            // SAFETY: s..<upTo lies inside the region (extent ⊆ 0..<region.size), which stays mapped for the call.
            try pwriteAll(fd, region.hostAddress + Int(s), count: Int(upTo - s), at: region.fileOffset + s, url: url)
            written += upTo - s
            runStart = nil
        }
        while offset < extent.upperBound {
            let length = Int(min(UInt64(pageSize), extent.upperBound - offset))
            // SAFETY: the page lies inside the region's mapping (see above).
            let isZero = zero.withUnsafeBytes { memcmp(region.hostAddress + Int(offset), $0.baseAddress!, length) == 0 }
            if isZero {
                try flush(offset)
            } else if runStart == nil {
                runStart = offset
            }
            offset += UInt64(length)
            if (offset - extent.lowerBound) % progressStep == 0 { report(offset - extent.lowerBound, written) }
        }
        try flush(extent.upperBound)
        return written
    }

    private static func pwriteAll(_ fd: Int32, _ base: UnsafeMutableRawPointer, count: Int, at fileOffset: UInt64, url: URL) throws {
        var done = 0
        while done < count {
            let n = pwrite(fd, base + done, count - done, off_t(fileOffset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ioError("write", url) }
            done += n
        }
    }

    private static func ioError(_ what: String, _ url: URL) -> SnapshotError {
        SnapshotError(.io, "\(what) \(url.path): \(String(cString: strerror(errno)))")
    }
}
