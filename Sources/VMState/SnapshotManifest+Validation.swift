extension SnapshotManifest {
    /// Upper bounds for a manifest's contents; a hostile one is refused before
    /// anything is sized from it.
    public enum Limits {
        public static let manifestBytes = 1 << 20
        public static let files = 16
        public static let memoryRanges = 64
        public static let devices = 128
        public static let pageSize: UInt64 = 4096
    }

    /// Checks magic, version, the file list and the machine config against
    /// itself (the memory map must add up to the memory size).
    public func validate() throws {
        guard format == SnapshotManifest.formatName else {
            throw SnapshotError(.badMagic, "manifest format is '\(format.prefix(64))', expected '\(SnapshotManifest.formatName)'")
        }
        guard (SnapshotManifest.oldestReadableVersion...SnapshotManifest.currentVersion).contains(formatVersion) else {
            throw SnapshotError(.unsupportedVersion, "snapshot format version \(formatVersion); this build reads "
                + "\(SnapshotManifest.oldestReadableVersion)...\(SnapshotManifest.currentVersion)")
        }
        guard files.count <= Limits.files else { throw SnapshotError(.limitExceeded, "\(files.count) files listed") }
        var roles = Set<SnapshotFile.Role>()
        for f in files {
            guard roles.insert(f.role).inserted else { throw SnapshotError(.malformed, "two '\(f.role.rawValue)' files listed") }
            guard !f.name.isEmpty, f.name.utf8.count <= 255, !f.name.contains("/"), f.name != ".", f.name != ".." else {
                throw SnapshotError(.malformed, "file name '\(f.name.prefix(64))' is not a plain name inside the snapshot")
            }
            if let c = f.crc64, c.utf8.count != 16 || UInt64(c, radix: 16) == nil {
                throw SnapshotError(.malformed, "\(f.name): checksum '\(c.prefix(32))' is not 16 hex digits")
            }
        }
        guard file(.state) != nil else { throw SnapshotError(.malformed, "no state file listed") }
        guard let memory = file(.memory) else { throw SnapshotError(.malformed, "no memory file listed") }
        try machine.validate()
        guard memory.size == machine.memorySize else {
            throw SnapshotError(.sizeMismatch, "memory file listed as \(memory.size) bytes, the memory map holds \(machine.memorySize)")
        }
    }
}

extension SnapshotMachineConfig {
    /// Counts, alignment, overlaps, and a memory map adding up to the memory size.
    public func validate() throws {
        guard (1...StateLimits.vcpus).contains(cpuCount) else {
            throw SnapshotError(.limitExceeded, "\(cpuCount) vCPUs in the config (1...\(StateLimits.vcpus))")
        }
        guard memoryMap.count <= SnapshotManifest.Limits.memoryRanges else {
            throw SnapshotError(.limitExceeded, "\(memoryMap.count) memory ranges (at most \(SnapshotManifest.Limits.memoryRanges))")
        }
        guard devices.count <= SnapshotManifest.Limits.devices else {
            throw SnapshotError(.limitExceeded, "\(devices.count) devices (at most \(SnapshotManifest.Limits.devices))")
        }
        for d in devices {
            if let name = d.frozenFile {
                guard !name.isEmpty, name.utf8.count <= 255, !name.contains("/"), name != ".", name != ".." else {
                    throw SnapshotError(.malformed, "disk file '\(name.prefix(64))' is not a plain name inside the snapshot")
                }
            }
            guard (d.referencedFiles?.count ?? 0) <= 32 else {
                throw SnapshotError(.limitExceeded, "a disk references \(d.referencedFiles?.count ?? 0) files (at most 32)")
            }
        }
        guard !memoryMap.isEmpty else { throw SnapshotError(.malformed, "the memory map is empty") }
        let page = SnapshotManifest.Limits.pageSize
        var fileOffset: UInt64 = 0
        var ranges: [(start: UInt64, end: UInt64)] = []
        for (i, r) in memoryMap.enumerated() {
            guard r.size > 0, r.size % page == 0, r.guestAddress % page == 0 else {
                throw SnapshotError(.malformed, "memory range \(i) (0x\(String(r.guestAddress, radix: 16)), \(r.size) bytes) "
                    + "is empty or not page-aligned")
            }
            let (end, overflow) = r.guestAddress.addingReportingOverflow(r.size)
            guard !overflow, end <= 1 << 52 else {
                throw SnapshotError(.limitExceeded, "memory range \(i) ends beyond the guest-physical address space")
            }
            guard r.fileOffset == fileOffset else {
                throw SnapshotError(.malformed, "memory range \(i) is at file offset \(r.fileOffset), expected \(fileOffset)")
            }
            if let other = ranges.firstIndex(where: { r.guestAddress < $0.end && $0.start < end }) {
                throw SnapshotError(.malformed, "memory ranges \(other) and \(i) overlap")
            }
            ranges.append((r.guestAddress, end))
            fileOffset += r.size  // cannot overflow: each range ends below 2^52 and there are at most 64
        }
        guard fileOffset == memorySize else {
            throw SnapshotError(.sizeMismatch, "the memory map adds up to \(fileOffset) bytes, the config says \(memorySize)")
        }
    }
}
