import Posix

/// Routes guest port I/O or MMIO accesses to the device registered at an address.
public final class Bus: Sendable {
    public struct Range: Sendable, CustomStringConvertible {
        public let base: UInt64
        public let length: UInt64
        public var end: UInt64 { base + length }
        public var description: String { "0x\(String(base, radix: 16))+0x\(String(length, radix: 16))" }
    }

    public enum BusError: Error, CustomStringConvertible {
        case overlap(Range, Range)
        case emptyRange(UInt64)
        public var description: String {
            switch self {
            case .overlap(let a, let b): return "bus range \(a) overlaps \(b)"
            case .emptyRange(let base): return "empty bus range at 0x\(String(base, radix: 16))"
            }
        }
    }

    /// Sorted by base; the lock is held only to search or insert (every port I/O
    /// and MMIO exit resolves here, so never while a device runs).
    private let entries = Lock<[(range: Range, device: any BusDevice)]>([])

    public init() {}

    public func insert(_ device: any BusDevice, at base: UInt64, length: UInt64) throws {
        guard length > 0, base.addingReportingOverflow(length).overflow == false else { throw BusError.emptyRange(base) }
        let range = Range(base: base, length: length)
        try entries.withLock { entries in
            if let clash = entries.first(where: { $0.range.base < range.end && range.base < $0.range.end }) {
                throw BusError.overlap(range, clash.range)
            }
            entries.append((range, device))
            entries.sort { $0.range.base < $1.range.base }
        }
    }

    /// The device covering `address` and the offset into it.
    public func resolve(_ address: UInt64) -> (device: any BusDevice, offset: UInt64)? {
        entries.withLock { entries in
            // Few devices: a binary search over the sorted ranges.
            var low = 0, high = entries.count
            while low < high {
                let mid = (low + high) / 2
                if entries[mid].range.end <= address { low = mid + 1 } else { high = mid }
            }
            guard low < entries.count, entries[low].range.base <= address else { return nil }
            return (entries[low].device, address - entries[low].range.base)
        }
    }

    /// Dispatches a read; returns false when no device is there (the caller decides
    /// what the guest sees, normally all ones).
    @discardableResult
    public func read(_ address: UInt64, into data: UnsafeMutableRawBufferPointer) -> Bool {
        guard let (device, offset) = resolve(address) else { return false }
        device.read(offset: offset, into: data)
        return true
    }

    @discardableResult
    public func write(_ address: UInt64, data: UnsafeRawBufferPointer) -> Bool {
        guard let (device, offset) = resolve(address) else { return false }
        device.write(offset: offset, data: data)
        return true
    }
}
