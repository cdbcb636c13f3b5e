/// What a live migration without shared storage needs from the top qcow2
/// layer (docs/migration.md, "Disks without shared storage"): which guest
/// clusters the layer holds, and which ones are written from a point on.
extension Qcow2Image {
    /// Starts recording the guest clusters written from now on, by every write
    /// path: `write`, `discard`, `writeZeroes`, and writes the async engine
    /// sends to the file directly (marked when `dataExtents(forWrite:)` hands
    /// their place out, before the data lands; the caller must let such writes
    /// complete before it reads a cluster it took from the record).
    public func startTrackingWrites() {
        writtenClusters = ClusterBitmap(clusters: Int(guestClusters))
    }

    /// The clusters written since the last call (or the start); the record starts empty again.
    public func takeWrittenClusters() -> ClusterBitmap {
        let taken = writtenClusters ?? ClusterBitmap(clusters: Int(guestClusters))
        if writtenClusters != nil { writtenClusters = ClusterBitmap(clusters: Int(guestClusters)) }
        return taken
    }

    public func stopTrackingWrites() {
        writtenClusters = nil
    }

    /// Guest clusters of the virtual disk (the last may be partial).
    public var guestClusters: UInt64 { (virtualSize + clusterSize - 1) / clusterSize }

    /// The guest clusters this layer itself maps — data, compressed or zero
    /// clusters — as opposed to those that fall through to the backing file.
    public func allocatedClusters() throws -> ClusterBitmap {
        var map = ClusterBitmap(clusters: Int(guestClusters))
        var g: UInt64 = 0
        while g < guestClusters {
            // A whole L2 table's range is skipped when its L1 entry is empty.
            if g % l2EntriesPerTable == 0, try !hasL2Table(for: g) {
                g += l2EntriesPerTable
                continue
            }
            if try lookup(g) != .unallocated { map.insert(first: Int(g), count: 1) }
            g += 1
        }
        return map
    }

    /// Marks the guest clusters `offset..<offset+length` touches as written, when tracking.
    func noteWrite(at offset: UInt64, length: UInt64) {
        guard writtenClusters != nil, length > 0 else { return }
        let first = offset / clusterSize, last = (offset + length - 1) / clusterSize
        writtenClusters!.insert(first: Int(first), count: Int(last - first + 1))
    }
}
