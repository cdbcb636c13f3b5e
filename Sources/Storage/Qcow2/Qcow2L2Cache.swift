/// One L2 table held in memory, decoded to host-endian entries.
final class L2Table {
    let offset: UInt64
    var entries: [UInt64]
    /// Changed in memory, not yet written to the file.
    var dirty = false
    var lastUse: UInt64 = 0

    init(offset: UInt64, entries: [UInt64]) {
        self.offset = offset
        self.entries = entries
    }

    func encoded() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: entries.count * 8)
        for (i, e) in entries.enumerated() { b.putBE64(e, at: i * 8) }
        return b
    }
}

/// A write-back LRU cache of L2 tables. Dirty tables are written by the image's
/// metadata flush (which orders refcounts → L2 → L1); evicting a dirty table asks
/// for such a flush first, so the cache never writes out of order on its own.
final class Qcow2L2Cache {
    let capacity: Int
    private(set) var tables: [UInt64: L2Table] = [:]
    private var clock: UInt64 = 0

    init(capacity: Int) { self.capacity = max(2, capacity) }

    func lookup(_ offset: UInt64) -> L2Table? {
        guard let t = tables[offset] else { return nil }
        clock += 1
        t.lastUse = clock
        return t
    }

    /// Adds a table, evicting the least recently used one when full. `flush` writes
    /// every dirty table (in the right order) when only dirty ones are left to evict.
    func insert(_ table: L2Table, flush: () throws -> Void) throws {
        if tables.count >= capacity {
            if tables.values.allSatisfy(\.dirty) { try flush() }
            if let victim = tables.values.filter({ !$0.dirty }).min(by: { $0.lastUse < $1.lastUse }) {
                tables[victim.offset] = nil
            }
        }
        clock += 1
        table.lastUse = clock
        tables[table.offset] = table
    }

    var dirtyTables: [L2Table] { tables.values.filter(\.dirty).sorted { $0.offset < $1.offset } }
}
