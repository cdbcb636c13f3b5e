/// Big-endian field access on byte arrays: every number in a qcow2 file is big-endian.
/// Callers check that the field lies inside the array before calling.
extension Array where Element == UInt8 {
    func be16(_ at: Int) -> UInt16 {
        UInt16(self[at]) << 8 | UInt16(self[at + 1])
    }

    func be32(_ at: Int) -> UInt32 {
        var v: UInt32 = 0
        for i in 0 ..< 4 { v = v << 8 | UInt32(self[at + i]) }
        return v
    }

    func be64(_ at: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0 ..< 8 { v = v << 8 | UInt64(self[at + i]) }
        return v
    }

    mutating func putBE16(_ v: UInt16, at: Int) {
        self[at] = UInt8(truncatingIfNeeded: v >> 8)
        self[at + 1] = UInt8(truncatingIfNeeded: v)
    }

    mutating func putBE32(_ v: UInt32, at: Int) {
        for i in 0 ..< 4 { self[at + i] = UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32(i))) }
    }

    mutating func putBE64(_ v: UInt64, at: Int) {
        for i in 0 ..< 8 { self[at + i] = UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64(i))) }
    }
}

extension UInt64 {
    /// `self + other`, or nil on overflow (offsets from files are hostile).
    func adding(_ other: UInt64) -> UInt64? {
        let (v, o) = addingReportingOverflow(other)
        return o ? nil : v
    }

    func multiplied(by other: UInt64) -> UInt64? {
        let (v, o) = multipliedReportingOverflow(by: other)
        return o ? nil : v
    }

    /// Rounded up to a multiple of the power of two `alignment`, or nil on overflow.
    func alignedUp(_ alignment: UInt64) -> UInt64? {
        adding(alignment - 1).map { $0 & ~(alignment - 1) }
    }
}
