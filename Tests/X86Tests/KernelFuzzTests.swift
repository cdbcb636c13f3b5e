import GuestMemory
import Testing
@testable import X86

/// Kernel files are untrusted input: valid ELF and bzImage headers with random
/// fields overwritten (extreme values where they hurt most: sizes, offsets,
/// counts) must parse or be refused with a BootError, and whatever parses must
/// load or be refused, never trap.
struct KernelFuzzTests {
    /// SplitMix64, seeded: a failure replays.
    private struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
    }

    /// Overwrites 1–4 fields of `width` bytes at random offsets below `limit` with
    /// extreme or random values.
    private static func mutate(_ bytes: [UInt8], limit: Int, _ rng: inout Random) -> [UInt8] {
        var b = bytes
        let extremes: [UInt64] = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000_0000_0000, .max, .max - 7]
        for _ in 0 ..< 1 + Int(rng.next() % 4) {
            let width = [1, 2, 4, 8][Int(rng.next() % 4)]
            let at = Int(rng.next() % UInt64(limit - width))
            let value = rng.next() % 2 == 0 ? extremes[Int(rng.next() % UInt64(extremes.count))] : rng.next()
            for i in 0 ..< width { b[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        }
        // Sometimes the file is cut short as well.
        if rng.next() % 8 == 0 { b = Array(b.prefix(Int(rng.next() % UInt64(b.count)))) }
        return b
    }

    @Test func mutatedELFHeadersAreParsedOrRefused() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 8 << 20)])
        var rng = Random(state: 0xe1f)
        var parsed = 0, refused = 0
        for _ in 0 ..< 4000 {
            let bytes = Self.mutate(ELFKernelTests.makeELF(), limit: 0x1a0, &rng)
            do {
                let elf = try ELFKernel(bytes)
                parsed += 1
                do { try elf.load(bytes, into: memory) } catch is BootError {} catch is GuestMemoryError {}
            } catch is BootError {
                refused += 1
            }
        }
        #expect(parsed > 0 && refused > 0)
    }

    @Test func mutatedBzImageHeadersAreParsedOrRefused() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 32 << 20)])
        var rng = Random(state: 0xb21)
        var parsed = 0, refused = 0
        for _ in 0 ..< 4000 {
            let bytes = Self.mutate(BootParamsTests.fakeBzImage(), limit: 0x270, &rng)
            do {
                let image = try BzImage(bytes)
                parsed += 1
                do { try image.load(bytes, into: memory) } catch is BootError {} catch is GuestMemoryError {}
                _ = try? InitrdPlacement.address(size: 1 << 20, kernelEnd: image.end, ramSize: 32 << 20,
                                                 addressMax: image.initrdAddressMax)
                let params = BootParams(setupHeader: image.setupHeader, commandLine: GuestAddress(0x20000),
                                        commandLineSize: image.commandLineSize, initrd: nil, e820: [], rsdp: nil)
                #expect(try params.bytes().count == BootParams.size)
            } catch is BootError {
                refused += 1
            }
        }
        #expect(parsed > 0 && refused > 0)
    }
}
