import GuestMemory
import Migration
import Posix
#if canImport(Glibc)
import Glibc
#endif

/// Writes guest pages to a migration stream as `memory` runs: consecutive
/// non-zero pages as data runs of up to 1 MiB, zero pages as markers only.
/// Pages are read straight from guest RAM (no copy) while the guest may run:
/// a page changed after it was read is dirty again and goes in a later round.
struct MemorySender {
    let memory: GuestMemory
    let stream: ByteStream
    /// Bytes put on the wire, headers included.
    private(set) var bytesSent: UInt64 = 0
    private(set) var dataPages: UInt64 = 0
    private(set) var zeroPages: UInt64 = 0
    private static let page = 4096

    init(memory: GuestMemory, stream: ByteStream) {
        self.memory = memory
        self.stream = stream
    }

    /// Round 0: every page that may hold data. For memfd RAM the file's holes
    /// (never-touched pages) are skipped outright: the destination's RAM starts zeroed.
    mutating func sendAll() throws {
        for region in memory.regions {
            for extent in try SparseMemoryFile.dataExtents(of: region, in: memory) {
                try send(region, firstPage: Int(extent.lowerBound) / Self.page,
                         count: Int((extent.upperBound - extent.lowerBound + UInt64(Self.page) - 1)) / Self.page)
            }
        }
    }

    /// The pages set in `bitmap` (global page numbers, RAM-file order).
    mutating func send(bitmap: [UInt64]) throws {
        for region in memory.regions {
            let first = Int(region.fileOffset) / Self.page
            let count = Int(region.size) / Self.page
            var p = 0
            while p < count {
                let g = first + p
                let word = bitmap[g >> 6]
                if word == 0 && g & 63 == 0 { p += min(64, count - p); continue }
                guard word & (1 << UInt64(g & 63)) != 0 else { p += 1; continue }
                var end = p + 1
                while end < count, bitmap[(first + end) >> 6] & (1 << UInt64((first + end) & 63)) != 0 { end += 1 }
                try send(region, firstPage: p, count: end - p)
                p = end
            }
        }
    }

    /// Pages `firstPage..<firstPage+count` of `region`, split into zero and data runs.
    private mutating func send(_ region: GuestMemoryRegion, firstPage: Int, count: Int) throws {
        var p = firstPage
        let end = firstPage + count
        while p < end {
            let zero = isZero(region, page: p)
            var q = p + 1
            let cap = zero ? end : min(end, p + Int(MemoryRun.maxDataPages))
            while q < cap, isZero(region, page: q) == zero { q += 1 }
            try emit(region, firstPage: p, count: q - p, zero: zero)
            p = q
        }
    }

    private mutating func emit(_ region: GuestMemoryRegion, firstPage: Int, count: Int, zero: Bool) throws {
        let run = MemoryRun(guestAddress: region.start.rawValue + UInt64(firstPage * Self.page), pages: UInt32(count),
                            encoding: zero ? .zero : .data)
        try MigrationFrame.writeHeader(.memory, length: run.frameLength, to: stream)
        try run.header().withUnsafeBytes { try stream.write($0) }
        if !zero {
            // SAFETY: the run lies inside the region (page numbers come from its size), mapped for the VM's life.
            try stream.write(UnsafeRawBufferPointer(start: region.hostAddress + firstPage * Self.page, count: count * Self.page))
            dataPages += UInt64(count)
        } else {
            zeroPages += UInt64(count)
        }
        bytesSent += UInt64(MigrationFrame.headerSize) + run.frameLength
    }

    /// A page of zeros to compare with (memcmp is vectorised; a Swift loop is not in debug builds).
    private static let zeros = [UInt8](repeating: 0, count: page)

    private func isZero(_ region: GuestMemoryRegion, page: Int) -> Bool {
        // SAFETY: page < region.size / 4096 (callers), so the 4 KiB read stays inside the mapping.
        let base = region.hostAddress + page * Self.page
        if base.load(as: UInt64.self) != 0 { return false }
        return Self.zeros.withUnsafeBytes { memcmp(base, $0.baseAddress!, Self.page) == 0 }
    }
}
