import GuestMemory

/// An ELF kernel (`vmlinux` or a Skiff test guest) booted through its PVH entry:
/// the `XEN_ELFNOTE_PHYS32_ENTRY` note gives a 32-bit protected-mode entry point.
/// Segments are loaded at their physical addresses; every field is checked
/// against the file and guest RAM before anything is copied.
public struct ELFKernel {
    public struct Segment: Equatable {
        public var fileOffset: UInt64
        public var fileSize: UInt64
        public var physicalAddress: UInt64
        public var memorySize: UInt64
    }

    public let is64Bit: Bool
    public let segments: [Segment]
    /// The PVH 32-bit entry point.
    public let pvhEntry: UInt32
    /// One past the highest byte any segment occupies.
    public let end: UInt64

    static let xenNoteName: [UInt8] = Array("Xen".utf8) + [0]
    static let xenElfnotePhys32Entry: UInt32 = 18

    public static func isELF(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && bytes[0] == 0x7F && bytes[1] == 0x45 && bytes[2] == 0x4C && bytes[3] == 0x46
    }

    /// Parses and validates the headers; loads nothing.
    public init(_ bytes: [UInt8]) throws {
        let r = ImageReader(bytes: bytes)
        guard ELFKernel.isELF(bytes) else { throw BootError.notAKernel("no ELF magic") }
        guard let elfClass = r.read(UInt8.self, at: 4), elfClass == 1 || elfClass == 2 else {
            throw BootError.notAKernel("unknown ELF class")
        }
        guard r.read(UInt8.self, at: 5) == 1 else { throw BootError.unsupportedKernel("ELF is not little-endian") }
        let is64 = elfClass == 2
        guard let machine = r.read(UInt16.self, at: 18), machine == 62 || machine == 3 else {
            throw BootError.unsupportedKernel("ELF is not for x86")
        }
        func word(_ at: Int) -> UInt64? { is64 ? r.read(UInt64.self, at: at) : r.read(UInt32.self, at: at).map(UInt64.init) }
        guard let phoff = word(is64 ? 32 : 28),
              let phentsize = r.read(UInt16.self, at: is64 ? 54 : 42),
              let phnum = r.read(UInt16.self, at: is64 ? 56 : 44) else {
            throw BootError.notAKernel("truncated ELF header")
        }
        guard phnum > 0, Int(phentsize) >= (is64 ? 56 : 32) else { throw BootError.notAKernel("ELF has no program headers") }

        var segments: [Segment] = []
        var entry: UInt32?
        var end: UInt64 = 0
        for i in 0..<Int(phnum) {
            let (off, overflow) = phoff.addingReportingOverflow(UInt64(i) * UInt64(phentsize))
            guard !overflow, off < UInt64(bytes.count), let base = Int(exactly: off) else {
                throw BootError.notAKernel("program header \(i) outside the file")
            }
            guard let type = r.read(UInt32.self, at: base) else { throw BootError.notAKernel("truncated program header \(i)") }
            let fields: (offset: UInt64?, paddr: UInt64?, filesz: UInt64?, memsz: UInt64?) = is64
                ? (word(base + 8), word(base + 24), word(base + 32), word(base + 40))
                : (word(base + 4), word(base + 12), word(base + 16), word(base + 20))
            guard let offset = fields.offset, let paddr = fields.paddr, let filesz = fields.filesz, let memsz = fields.memsz else {
                throw BootError.notAKernel("truncated program header \(i)")
            }
            let (fileEnd, o1) = offset.addingReportingOverflow(filesz)
            guard !o1, fileEnd <= UInt64(bytes.count) else { throw BootError.notAKernel("segment \(i) runs past the end of the file") }
            switch type {
            case 1: // PT_LOAD
                guard filesz <= memsz else { throw BootError.notAKernel("segment \(i) has file size > memory size") }
                let (segEnd, o2) = paddr.addingReportingOverflow(memsz)
                guard !o2 else { throw BootError.notAKernel("segment \(i) wraps the address space") }
                if memsz > 0 {
                    segments.append(Segment(fileOffset: offset, fileSize: filesz, physicalAddress: paddr, memorySize: memsz))
                    end = max(end, segEnd)
                }
            case 4: // PT_NOTE
                if let e = ELFKernel.pvhEntry(inNotes: r, offset: Int(offset), size: Int(filesz)) { entry = e }
            default:
                break
            }
        }
        guard !segments.isEmpty else { throw BootError.notAKernel("ELF has no loadable segments") }
        guard let entry else {
            throw BootError.unsupportedKernel("ELF has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build the kernel with CONFIG_PVH=y")
        }
        self.is64Bit = is64
        self.segments = segments
        self.pvhEntry = entry
        self.end = end
    }

    /// Walks an ELF note area for the Xen PHYS32_ENTRY note.
    static func pvhEntry(inNotes r: ImageReader, offset: Int, size: Int) -> UInt32? {
        var cursor = offset
        let limit = offset + size
        func align4(_ n: Int) -> Int { (n + 3) & ~3 }
        while cursor + 12 <= limit {
            guard let nameSize = r.read(UInt32.self, at: cursor), let descSize = r.read(UInt32.self, at: cursor + 4),
                  let type = r.read(UInt32.self, at: cursor + 8), nameSize < 1 << 16, descSize < 1 << 16 else { return nil }
            let nameAt = cursor + 12
            let descAt = nameAt + align4(Int(nameSize))
            let next = descAt + align4(Int(descSize))
            guard next <= limit else { return nil }
            if type == xenElfnotePhys32Entry, let name = r.slice(nameAt, Int(nameSize)), Array(name) == xenNoteName,
               descSize >= 4, let value = r.read(UInt32.self, at: descAt) {
                return value
            }
            cursor = next
        }
        return nil
    }

    /// Copies the segments into guest memory and zeroes their BSS.
    public func load(_ bytes: [UInt8], into memory: GuestMemory) throws {
        for s in segments {
            guard memory.isValid(GuestAddress(s.physicalAddress), length: s.memorySize) else {
                throw BootError.doesNotFit("ELF segment at 0x\(String(s.physicalAddress, radix: 16)) (\(s.memorySize) bytes)")
            }
        }
        for s in segments {
            let start = Int(s.fileOffset), count = Int(s.fileSize)
            try bytes.withUnsafeBytes { raw in
                try memory.write(UnsafeRawBufferPointer(rebasing: raw[start..<start + count]), to: GuestAddress(s.physicalAddress))
            }
            if s.memorySize > s.fileSize {
                try memory.zero(GuestAddress(s.physicalAddress + s.fileSize), length: s.memorySize - s.fileSize)
            }
        }
    }
}
