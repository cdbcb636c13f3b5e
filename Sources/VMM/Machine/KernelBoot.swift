import FoundationEssentials
import GuestMemory
import X86

/// Loads kernel, initrd and command line into guest memory the way the kernel's
/// format wants (PVH for ELF, the 64-bit boot protocol for bzImage) and says
/// how the boot vCPU must start.
enum KernelBoot {
    static func load(config: MachineConfig, memory: GuestMemory, rsdp: GuestAddress?) throws -> BootCPUState {
        let kernel = try readFile(config.kernelPath, what: "kernel")
        let e820 = MemoryMap.e820(ramSize: config.memorySize)

        if ELFKernel.isELF(kernel) {
            let elf = try ELFKernel(kernel)
            try elf.load(kernel, into: memory)
            let cmdline = try KernelCommandLine.write(config.commandLine, to: memory)
            let initrd = try loadInitrd(config, memory: memory, kernelEnd: elf.end, addressMax: Layout.mmioHoleStart - 1)
            let startInfo = try PVHStartInfo(commandLine: cmdline, initrd: initrd, rsdp: rsdp, memoryMap: e820).write(to: memory)
            return .pvh(entry: elf.pvhEntry, startInfo: startInfo)
        }
        if BzImage.isBzImage(kernel) {
            let image = try BzImage(kernel)
            try image.load(kernel, into: memory)
            let cmdline = try KernelCommandLine.write(config.commandLine, to: memory,
                                                      maximumSize: min(image.commandLineSize, Int(Layout.commandLineMaxSize)))
            let initrd = try loadInitrd(config, memory: memory, kernelEnd: image.end, addressMax: image.initrdAddressMax)
            let params = BootParams(setupHeader: image.setupHeader, commandLine: cmdline, commandLineSize: image.commandLineSize,
                                    initrd: initrd, e820: e820, rsdp: rsdp)
            return .linux64(entry: image.entry, bootParams: try params.write(to: memory))
        }
        throw BootError.notAKernel("'\(config.kernelPath)' is neither an ELF (vmlinux, PVH) nor a bzImage")
    }

    private static func loadInitrd(_ config: MachineConfig, memory: GuestMemory, kernelEnd: UInt64,
                                   addressMax: UInt64) throws -> (address: GuestAddress, size: UInt64)? {
        guard let path = config.initrdPath else { return nil }
        let bytes = try readFile(path, what: "initrd")
        let address = try InitrdPlacement.address(size: UInt64(bytes.count), kernelEnd: kernelEnd,
                                                  ramSize: config.memorySize, addressMax: addressMax)
        try memory.write(bytes, to: GuestAddress(address))
        return (GuestAddress(address), UInt64(bytes.count))
    }

    private static func readFile(_ path: String, what: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("cannot read \(what) file '\(path)'")
        }
        guard !data.isEmpty else { throw BootError.notAKernel("\(what) file '\(path)' is empty") }
        return [UInt8](data)
    }
}
