/// One bit per guest cluster of a disk: the clusters a live migration must
/// still send (written since the last look, or allocated in the top layer).
/// Not thread-safe: owned like the image it describes (one thread at a time).
public struct ClusterBitmap: Equatable, Sendable {
    public let clusters: Int
    private var words: [UInt64]

    public init(clusters: Int) {
        self.clusters = clusters
        words = [UInt64](repeating: 0, count: (clusters + 63) / 64)
    }

    public var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }
    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }

    public func contains(_ cluster: Int) -> Bool {
        cluster >= 0 && cluster < clusters && words[cluster >> 6] & (1 << UInt64(cluster & 63)) != 0
    }

    /// Sets the bits of `first..<first+count`, clipped to the bitmap.
    public mutating func insert(first: Int, count: Int) {
        var c = max(0, first)
        let end = min(clusters, first + count)
        while c < end {
            if c & 63 == 0, end - c >= 64 {
                words[c >> 6] = ~0
                c += 64
            } else {
                words[c >> 6] |= 1 << UInt64(c & 63)
                c += 1
            }
        }
    }

    public mutating func formUnion(_ other: ClusterBitmap) {
        precondition(other.clusters == clusters, "cluster bitmaps of different disks")
        for i in words.indices { words[i] |= other.words[i] }
    }

    /// The set clusters as runs of consecutive clusters, each at most `maxRun` long.
    public func runs(maxRun: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var c = 0
        while c < clusters {
            if words[c >> 6] == 0 && c & 63 == 0 { c += 64; continue }
            guard contains(c) else { c += 1; continue }
            var end = c + 1
            while end < clusters, end - c < maxRun, contains(end) { end += 1 }
            out.append(c..<end)
            c = end
        }
        return out
    }
}
