/// How many times the image's metadata references each host cluster, for `check`.
///
/// Stored in pages allocated on first reference rather than one array as long as
/// the file: a hostile sparse file can claim any length for free, but memory here
/// grows only with the clusters its (size-capped) metadata actually names. Pages
/// are small (1024 counters, 4 KiB) so that references scattered over a large file
/// cost little each, and a small image's check allocates and scans one 4 KiB page
/// rather than a 256 KiB one.
struct ClusterReferences {
    static let pageBits: UInt64 = 10
    static let pageSize = 1 << Int(pageBits)

    private var pages: [UInt64: [UInt32]] = [:]
    /// The highest cluster with a reference, if any.
    private(set) var highest: UInt64?

    /// Counts one more reference to `cluster` (saturating: a count that high is corrupt anyway).
    mutating func add(_ cluster: UInt64) {
        guard count(cluster) < .max else { return }
        let page = cluster >> Self.pageBits, slot = Int(cluster & UInt64(Self.pageSize - 1))
        pages[page, default: [UInt32](repeating: 0, count: Self.pageSize)][slot] += 1
        highest = max(highest ?? cluster, cluster)
    }

    /// References counted for `cluster`.
    func count(_ cluster: UInt64) -> UInt32 {
        pages[cluster >> Self.pageBits]?[Int(cluster & UInt64(Self.pageSize - 1))] ?? 0
    }

    /// Calls `body` for each cluster with at least one reference, in ascending order.
    func forEachReferenced(_ body: (UInt64) throws -> Void) rethrows {
        for page in pages.keys.sorted() {
            for (slot, n) in pages[page]!.enumerated() where n > 0 { try body(page << Self.pageBits | UInt64(slot)) }
        }
    }
}
