/// A raw DEFLATE (RFC 1951) decoder for compressed qcow2 clusters, which QEMU
/// writes as zlib deflate streams without the zlib header. Written in Swift so the
/// storage layer needs no zlib at build or run time. Every length, distance and
/// code is checked: the input is hostile, the output is capped at `expectedSize`.
enum Inflate {
    private struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols: [Int]

        init(lengths: [Int]) throws {
            symbols = [Int](repeating: 0, count: lengths.count)
            for l in lengths { counts[l] += 1 }
            counts[0] = 0
            var left = 1
            for len in 1 ..< 16 {
                left <<= 1
                left -= counts[len]
                if left < 0 { throw Inflate.error("over-subscribed Huffman code") }
            }
            var offs = [Int](repeating: 0, count: 16)
            for len in 1 ..< 15 { offs[len + 1] = offs[len] + counts[len] }
            for (sym, l) in lengths.enumerated() where l != 0 {
                symbols[offs[l]] = sym
                offs[l] += 1
            }
        }
    }

    private struct Reader {
        let input: [UInt8]
        var pos = 0
        var bitBuf: UInt32 = 0
        var bitCount = 0

        mutating func bits(_ n: Int) throws -> Int {
            while bitCount < n {
                guard pos < input.count else { throw Inflate.error("compressed data ends early") }
                bitBuf |= UInt32(input[pos]) << UInt32(bitCount)
                pos += 1
                bitCount += 8
            }
            let v = Int(bitBuf & ((1 << UInt32(n)) - 1))
            bitBuf >>= UInt32(n)
            bitCount -= n
            return v
        }

        mutating func decode(_ h: Huffman) throws -> Int {
            var code = 0, first = 0, index = 0
            for len in 1 ..< 16 {
                code |= try bits(1)
                let count = h.counts[len]
                if code - count < first { return h.symbols[index + (code - first)] }
                index += count
                first += count
                first <<= 1
                code <<= 1
            }
            throw Inflate.error("invalid Huffman code")
        }
    }

    private static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    private static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    private static let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    private static let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    static func error(_ why: String) -> StorageError { StorageError(.corruptImage, "compressed cluster: \(why)") }

    /// Decodes `input` into exactly `expectedSize` bytes (a short stream is corrupt).
    static func inflate(_ input: [UInt8], expectedSize: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(expectedSize)
        var r = Reader(input: input)
        var last = false
        while !last {
            last = try r.bits(1) == 1
            switch try r.bits(2) {
            case 0:
                r.bitBuf = 0; r.bitCount = 0
                guard r.pos + 4 <= input.count else { throw error("stored block header truncated") }
                let len = Int(input[r.pos]) | Int(input[r.pos + 1]) << 8
                let nlen = Int(input[r.pos + 2]) | Int(input[r.pos + 3]) << 8
                r.pos += 4
                guard len == ~nlen & 0xFFFF else { throw error("stored block length mismatch") }
                guard r.pos + len <= input.count else { throw error("stored block truncated") }
                guard out.count + len <= expectedSize else { throw error("data larger than a cluster") }
                out += input[r.pos ..< r.pos + len]
                r.pos += len
            case 1:
                var lengths = [Int](repeating: 8, count: 288)
                for i in 144 ..< 256 { lengths[i] = 9 }
                for i in 256 ..< 280 { lengths[i] = 7 }
                try codes(&r, &out, Huffman(lengths: lengths), Huffman(lengths: [Int](repeating: 5, count: 30)), expectedSize)
            case 2:
                let nlen = try r.bits(5) + 257, ndist = try r.bits(5) + 1, ncode = try r.bits(4) + 4
                guard nlen <= 286, ndist <= 30 else { throw error("bad dynamic block counts") }
                let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
                var cl = [Int](repeating: 0, count: 19)
                for i in 0 ..< ncode { cl[order[i]] = try r.bits(3) }
                let clh = try Huffman(lengths: cl)
                var lengths: [Int] = []
                while lengths.count < nlen + ndist {
                    let sym = try r.decode(clh)
                    switch sym {
                    case 0 ..< 16: lengths.append(sym)
                    case 16:
                        guard let prev = lengths.last else { throw error("repeat with no previous length") }
                        lengths += [Int](repeating: prev, count: 3 + (try r.bits(2)))
                    case 17: lengths += [Int](repeating: 0, count: 3 + (try r.bits(3)))
                    default: lengths += [Int](repeating: 0, count: 11 + (try r.bits(7)))
                    }
                }
                guard lengths.count == nlen + ndist else { throw error("code lengths overrun") }
                try codes(&r, &out, Huffman(lengths: Array(lengths[0 ..< nlen])), Huffman(lengths: Array(lengths[nlen...])), expectedSize)
            default:
                throw error("invalid block type")
            }
        }
        guard out.count == expectedSize else { throw error("decoded \(out.count) bytes, expected \(expectedSize)") }
        return out
    }

    private static func codes(_ r: inout Reader, _ out: inout [UInt8], _ lit: Huffman, _ dist: Huffman, _ limit: Int) throws {
        while true {
            let sym = try r.decode(lit)
            if sym < 256 {
                guard out.count < limit else { throw error("data larger than a cluster") }
                out.append(UInt8(sym))
            } else if sym == 256 {
                return
            } else {
                let li = sym - 257
                guard li < 29 else { throw error("bad length symbol") }
                let len = lengthBase[li] + (try r.bits(lengthExtra[li]))
                let ds = try r.decode(dist)
                guard ds < 30 else { throw error("bad distance symbol") }
                let d = distBase[ds] + (try r.bits(distExtra[ds]))
                guard d <= out.count else { throw error("distance too far back") }
                guard out.count + len <= limit else { throw error("data larger than a cluster") }
                let start = out.count - d
                for i in 0 ..< len { out.append(out[start + i]) }
            }
        }
    }
}
