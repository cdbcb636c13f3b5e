import GuestMemory

extension GuestMemory {
    /// True when every byte of `[address, address+length)` is guest RAM, allowing
    /// the range to cross into a region that starts exactly where the last one ends.
    /// Only looks: no view is handed out, nothing is marked or allocated (this runs
    /// for every descriptor).
    func containsRange(_ address: GuestAddress, length: UInt64) -> Bool {
        if isValid(address, length: length) { return true } // one region: the usual case
        guard address.adding(length) != nil else { return false }
        var cursor = address.rawValue
        var left = length
        while left > 0 {
            guard let r = region(containing: GuestAddress(cursor)) else { return false }
            let n = min(r.end - cursor, left)
            cursor += n
            left -= n
        }
        return true
    }

    /// Host views of `[address, address+length)`, one per region it touches.
    /// Throws before returning anything if any byte is outside RAM or the range wraps.
    func hostBuffers(_ address: GuestAddress, length: UInt64) throws -> [UnsafeMutableRawBufferPointer] {
        guard address.adding(length) != nil else { throw GuestMemoryError.rangeOutOfBounds(address, length: length) }
        var result: [UnsafeMutableRawBufferPointer] = []
        var cursor = address.rawValue
        var left = length
        while left > 0 {
            guard let r = region(containing: GuestAddress(cursor)) else {
                throw GuestMemoryError.rangeOutOfBounds(address, length: length)
            }
            let n = min(r.end - cursor, left)
            result.append(try buffer(at: GuestAddress(cursor), length: n))
            cursor += n
            left -= n
        }
        return result
    }
}
