/// An x86 segment as KVM's `kvm_segment` describes it, and its GDT encoding.
public struct Segment: Equatable, Sendable {
    public var base: UInt64 = 0
    public var limit: UInt32 = 0
    public var selector: UInt16 = 0
    public var type: UInt8 = 0
    public var present = true
    public var dpl: UInt8 = 0
    /// Default operand size 32-bit (D/B).
    public var db = false
    /// Code/data (true) versus system segment (false).
    public var s = true
    /// 64-bit code segment.
    public var l = false
    /// Limit counted in 4 KiB pages.
    public var g = false

    public init(base: UInt64 = 0, limit: UInt32 = 0, selector: UInt16 = 0, type: UInt8 = 0, present: Bool = true,
                dpl: UInt8 = 0, db: Bool = false, s: Bool = true, l: Bool = false, g: Bool = false) {
        self.base = base; self.limit = limit; self.selector = selector; self.type = type; self.present = present
        self.dpl = dpl; self.db = db; self.s = s; self.l = l; self.g = g
    }

    /// The 8-byte GDT descriptor.
    public var descriptor: UInt64 {
        let rawLimit = UInt64(g ? limit >> 12 : limit)
        var d: UInt64 = rawLimit & 0xFFFF
        d |= (base & 0xFF_FFFF) << 16
        d |= UInt64(type & 0xF) << 40
        d |= (s ? 1 : 0) << 44
        d |= UInt64(dpl & 3) << 45
        d |= (present ? 1 : 0) << 47
        d |= ((rawLimit >> 16) & 0xF) << 48
        d |= (l ? 1 : 0) << 53
        d |= (db ? 1 : 0) << 54
        d |= (g ? 1 : 0) << 55
        d |= ((base >> 24) & 0xFF) << 56
        return d
    }

    // Flat segments used to enter a kernel. Selectors match Linux's boot GDT
    // (__BOOT_CS = 0x10, __BOOT_DS = 0x18) so the values also make sense to it.
    public static let code64 = Segment(limit: 0xFFFF_FFFF, selector: 0x10, type: 0xB, l: true, g: true)
    public static let code32 = Segment(limit: 0xFFFF_FFFF, selector: 0x10, type: 0xB, db: true, g: true)
    public static let data = Segment(limit: 0xFFFF_FFFF, selector: 0x18, type: 0x3, db: true, g: true)
    /// A busy 64-bit TSS; VMX refuses to enter with a null task register.
    public static let taskState = Segment(limit: 0x67, selector: 0x20, type: 0xB, s: false)
    public static let null = Segment(present: false)
}
