/// The guest's physical memory map, as told to the kernel through boot_params
/// (e820) or the PVH start_info memory map.
public struct E820Entry: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        case ram = 1
        case reserved = 2
        case acpiReclaimable = 3
    }
    public var address: UInt64
    public var size: UInt64
    public var kind: Kind

    public init(address: UInt64, size: UInt64, kind: Kind) {
        self.address = address
        self.size = size
        self.kind = kind
    }
}

/// Where guest RAM lives for a given size: below the 32-bit MMIO hole, and the
/// rest above 4 GiB.
public enum MemoryMap {
    /// The RAM ranges for `size` bytes of guest memory.
    public static func ramRanges(size: UInt64) -> [(start: UInt64, size: UInt64)] {
        if size <= Layout.mmioHoleStart { return [(0, size)] }
        return [(0, Layout.mmioHoleStart), (Layout.mmioHoleEnd, size - Layout.mmioHoleStart)]
    }

    /// The e820 map for `size` bytes of RAM: base memory, the reserved BIOS area
    /// (MP table, ACPI), RAM from 1 MiB to the hole, and RAM above 4 GiB.
    public static func e820(ramSize size: UInt64) -> [E820Entry] {
        var entries = [
            E820Entry(address: 0, size: Layout.baseMemoryEnd, kind: .ram),
            E820Entry(address: Layout.baseMemoryEnd, size: Layout.highMemoryStart - Layout.baseMemoryEnd, kind: .reserved),
        ]
        let belowHole = min(size, Layout.mmioHoleStart)
        if belowHole > Layout.highMemoryStart {
            entries.append(E820Entry(address: Layout.highMemoryStart, size: belowHole - Layout.highMemoryStart, kind: .ram))
        }
        if size > Layout.mmioHoleStart {
            entries.append(E820Entry(address: Layout.mmioHoleEnd, size: size - Layout.mmioHoleStart, kind: .ram))
        }
        return entries
    }
}
