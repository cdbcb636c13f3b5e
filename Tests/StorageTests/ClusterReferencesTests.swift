import Testing
@testable import Storage

/// The sparse reference counter `check` uses: counts must not depend on where
/// its pages begin and end, and clusters come back in ascending order across pages.
@Suite struct ClusterReferencesTests {
    @Test func countsAndOrderAcrossPageBoundaries() {
        let page = UInt64(ClusterReferences.pageSize)
        // Both sides of the first page boundaries, a cluster far out, one counted twice.
        let clusters: [UInt64] = [1 << 40, page, 0, page - 1, 3 * page + 7, page, 2 * page - 1]
        var refs = ClusterReferences()
        for c in clusters { refs.add(c) }

        #expect(refs.count(0) == 1)
        #expect(refs.count(page - 1) == 1)
        #expect(refs.count(page) == 2)
        #expect(refs.count(page + 1) == 0)
        #expect(refs.count(2 * page - 1) == 1)
        #expect(refs.count(2 * page) == 0)
        #expect(refs.count(3 * page + 7) == 1)
        #expect(refs.count(1 << 40) == 1)
        #expect(refs.count((1 << 40) - 1) == 0)
        #expect(refs.highest == 1 << 40)

        var seen: [UInt64] = []
        refs.forEachReferenced { seen.append($0) }
        #expect(seen == Array(Set(clusters)).sorted())
    }

    @Test func emptyHasNoHighestAndNoClusters() {
        let refs = ClusterReferences()
        var seen = 0
        refs.forEachReferenced { _ in seen += 1 }
        #expect(refs.highest == nil)
        #expect(seen == 0)
        #expect(refs.count(12345) == 0)
    }
}
