import CKVM

/// One bit per 4 KiB page of guest RAM, in RAM-file order (page i is at file
/// offset i × 4096: regions back to back). Bits are set and taken atomically,
/// so device threads may mark while a migration harvests.
public final class PageBitmap: @unchecked Sendable {  // Sound because: `words` is only read or written through the C atomics.
    public let pages: Int
    private let words: UnsafeMutablePointer<UInt64>
    public var wordCount: Int { (pages + 63) / 64 }

    public init(pages: Int) {
        self.pages = pages
        words = .allocate(capacity: max(1, (pages + 63) / 64))
        words.initialize(repeating: 0, count: max(1, (pages + 63) / 64))
    }

    deinit { words.deallocate() }

    /// Sets the bits of pages `first..<first+count` (clipped to the bitmap).
    public func mark(first: Int, count: Int) {
        guard count > 0, first >= 0, first < pages else { return }
        let end = min(pages, first + count)
        var page = first
        while page < end {
            let bit = page & 63
            let n = min(64 - bit, end - page)
            let mask: UInt64 = n == 64 ? ~0 : ((1 << UInt64(n)) - 1) << UInt64(bit)
            ckvm_atomic_or64(words + (page >> 6), mask)
            page += n
        }
    }

    /// The bits now, each word zeroed as it is read.
    public func take() -> [UInt64] {
        (0..<wordCount).map { ckvm_atomic_exchange_zero64(words + $0) }
    }

    /// The bits now, left as they are.
    public func peek() -> [UInt64] {
        (0..<wordCount).map { ckvm_atomic_load64(words + $0) }
    }

    /// Zeroes every bit.
    public func clear() { _ = take() }

    public func isSet(_ page: Int) -> Bool {
        guard page >= 0, page < pages else { return false }
        return ckvm_atomic_load64(words + (page >> 6)) & (1 << UInt64(page & 63)) != 0
    }
}
