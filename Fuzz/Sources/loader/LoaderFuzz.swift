import Glibc
import GuestMemory
import X86

// The kernel loaders as `KernelBoot` drives them: the fuzzed file is a kernel, an
// ELF (PVH) or a bzImage; whatever it declares must fit the guest RAM or be refused.
// 16 MiB of RAM (mapped lazily): enough for the firmware ELFs' segments at 1 MiB.
private let ramSize: UInt64 = 16 << 20
private let memory = try! GuestMemory(ranges: [(GuestAddress(0), ramSize)])
private let e820 = MemoryMap.e820(ramSize: ramSize)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLoader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let kernel = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        if ELFKernel.isELF(kernel) {
            let elf = try ELFKernel(kernel)
            try elf.load(kernel, into: memory)
            let cmdline = try KernelCommandLine.write("console=ttyS0", to: memory)
            let initrd = try InitrdPlacement.address(size: 4096, kernelEnd: elf.end, ramSize: ramSize,
                                                     addressMax: Layout.mmioHoleStart - 1)
            _ = try PVHStartInfo(commandLine: cmdline, initrd: (GuestAddress(initrd), 4096), rsdp: nil, memoryMap: e820)
                .write(to: memory)
            _ = elf.pvhEntry
        } else if BzImage.isBzImage(kernel) {
            let image = try BzImage(kernel)
            try image.load(kernel, into: memory)
            let cmdline = try KernelCommandLine.write("console=ttyS0", to: memory,
                                                      maximumSize: min(image.commandLineSize, Int(Layout.commandLineMaxSize)))
            let initrd = try InitrdPlacement.address(size: 4096, kernelEnd: image.end, ramSize: ramSize,
                                                     addressMax: image.initrdAddressMax)
            let params = BootParams(setupHeader: image.setupHeader, commandLine: cmdline, commandLineSize: image.commandLineSize,
                                    initrd: (GuestAddress(initrd), 4096), e820: e820, rsdp: nil)
            _ = try params.write(to: memory)
            _ = image.entry
        }
    } catch {
        // A refusal is the right answer to a bad kernel; only traps and memory errors are findings.
    }
    return 0
}

// libFuzzer's own main is not linked (SwiftPM points `main` at this file's top-level code).
@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(_ argc: UnsafeMutablePointer<CInt>,
                       _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                       _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
var argc = CommandLine.argc, argv = CommandLine.unsafeArgv
exit(runDriver(&argc, &argv, { fuzzLoader($0, $1) }))
