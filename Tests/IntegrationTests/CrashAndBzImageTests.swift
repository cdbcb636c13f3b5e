import Foundation
import Testing

@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"))
struct CrashAndBzImageTests {
    /// A PVH ELF whose first instruction is `ud2` with no IDT: #UD, then a
    /// double and a triple fault. skiff must end non-zero with the registers.
    static func crashingELF() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 0x200)
        func put<T: FixedWidthInteger>(_ v: T, _ at: Int) {
            withUnsafeBytes(of: v.littleEndian) { for (i, x) in $0.enumerated() { b[at + i] = x } }
        }
        b[0] = 0x7F; b[1] = 0x45; b[2] = 0x4C; b[3] = 0x46; b[4] = 2; b[5] = 1; b[6] = 1
        put(UInt16(2), 16); put(UInt16(62), 18); put(UInt32(1), 20); put(UInt64(0x40), 32)
        put(UInt16(64), 52); put(UInt16(56), 54); put(UInt16(2), 56)
        put(UInt32(1), 0x40); put(UInt64(0x100), 0x48); put(UInt64(0x100000), 0x40 + 24)
        put(UInt64(2), 0x40 + 32); put(UInt64(2), 0x40 + 40)
        b[0x100] = 0x0F; b[0x101] = 0x0B                                          // ud2
        put(UInt32(4), 0x78); put(UInt64(0x180), 0x80); put(UInt64(20), 0x78 + 32)  // PT_NOTE
        put(UInt32(4), 0x180); put(UInt32(4), 0x184); put(UInt32(18), 0x188)
        b[0x18C] = 0x58; b[0x18D] = 0x65; b[0x18E] = 0x6E
        put(UInt32(0x100000), 0x190)
        return b
    }

    @Test func aCrashingGuestEndsNonZeroWithRegisters() throws {
        let dir = try Shell.temporaryDirectory("crash")
        defer { try? FileManager.default.removeItem(at: dir) }
        let elf = dir.appendingPathComponent("crash.elf")
        try Data(Self.crashingELF()).write(to: elf)
        let run = try SkiffProcess.run(["run", "--kernel", elf.path, "--memory", "16M"], timeout: 60)
        #expect(!run.timedOut)
        #expect(run.status == 1)
        #expect(run.stderr.contains("guest crashed"), "\(run.stderr)")
        #expect(run.stderr.contains("rip=0x100000"), "\(run.stderr)")
    }

    /// Debian's stock cloud kernel is a bzImage: its decompressor runs and reads
    /// our command line (it prints about `nokaslr`). Decompressing the whole
    /// kernel takes far too long where kernel code is emulated (kvm_pvm), so the
    /// test stops there; on hardware KVM it would boot on.
    @Test(.enabled(if: CrashAndBzImageTests.cloudKernel != nil, "needs Debian's linux-image-cloud-amd64 in /boot"))
    func stockBzImageKernelStartsAndReadsTheCommandLine() throws {
        let kernel = try #require(Self.cloudKernel)
        let run = try SkiffProcess.run(["run", "--kernel", kernel, "--memory", "512M",
                                        "--cmdline", "console=ttyS0 earlyprintk=serial nokaslr"],
                                       timeout: 180, stopWhen: "on cmdline.")
        #expect(run.stdout.contains("KASLR disabled: 'nokaslr' on cmdline."), "console: \(run.stdout.prefix(2000))")
        #expect(!run.stderr.contains("crashed"), "\(run.stderr)")
    }

    static var cloudKernel: String? {
        let boot = (try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []
        return boot.filter { $0.hasPrefix("vmlinuz-") && $0.hasSuffix("-cloud-amd64") }.sorted().last.map { "/boot/" + $0 }
    }
}
