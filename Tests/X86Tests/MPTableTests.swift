import GuestMemory
import Testing
@testable import X86

@Suite struct MPTableTests {
    struct Parsed {
        var pointer: [UInt8]
        var table: [UInt8]
        var processors: [(apicID: UInt8, flags: UInt8)] = []
        var ioAPICs: [(id: UInt8, version: UInt8, address: UInt32)] = []
        var buses: [String] = []
        var ioInterrupts: [(type: UInt8, sourceIRQ: UInt8, ioAPIC: UInt8, pin: UInt8)] = []
        var localInterrupts: [(type: UInt8, destination: UInt8, pin: UInt8)] = []
    }

    /// Finds the floating pointer and walks the configuration table in guest memory.
    func parse(cpus: Int) throws -> Parsed {
        let memory = try ACPITestSupport.memory()
        try MPTable.write(cpuCount: cpus, to: memory)
        let pointer = try memory.read(from: GuestAddress(Layout.mpTable), count: 16)
        let tableAddress = UInt64(pointer.le32(at: 4))
        let length: UInt16 = try memory.load(from: GuestAddress(tableAddress + 4))
        var p = Parsed(pointer: pointer, table: try memory.read(from: GuestAddress(tableAddress), count: Int(length)))
        let t = p.table
        var offset = 44
        for _ in 0..<t.le16(at: 34) {
            switch t[offset] {
            case 0:
                p.processors.append((t[offset + 1], t[offset + 3]))
                offset += 20
            case 1:
                p.buses.append(t.asciiField(at: offset + 2, count: 6))
                offset += 8
            case 2:
                p.ioAPICs.append((t[offset + 1], t[offset + 2], t.le32(at: offset + 4)))
                offset += 8
            case 3:
                p.ioInterrupts.append((t[offset + 1], t[offset + 5], t[offset + 6], t[offset + 7]))
                offset += 8
            case 4:
                p.localInterrupts.append((t[offset + 1], t[offset + 6], t[offset + 7]))
                offset += 8
            default:
                Issue.record("unknown MP entry type \(t[offset])")
                return p
            }
        }
        #expect(offset == t.count, "entry count and base table length agree")
        #expect(tableAddress + UInt64(length) <= 0xA0000)
        return p
    }

    @Test(arguments: [1, 2, 7, MPTable.maxCPUCount])
    func checksumsAndContents(cpus: Int) throws {
        let p = try parse(cpus: cpus)
        #expect(p.pointer.asciiField(at: 0, count: 4) == "_MP_")
        #expect(p.pointer.mod256Sum() == 0)
        #expect(p.pointer[8] == 1 && p.pointer[9] == 4, "16-byte pointer, spec 1.4")
        #expect(UInt64(p.pointer.le32(at: 4)) == Layout.mpTable + 16)

        #expect(p.table.asciiField(at: 0, count: 4) == "PCMP")
        #expect(p.table.mod256Sum() == 0)
        #expect(p.table.asciiField(at: 8, count: 8) == "SKIFF   ")
        #expect(p.table.le32(at: 36) == 0xFEE0_0000)
        #expect(p.table.le16(at: 40) == 0, "no extended table")

        #expect(p.processors.map(\.apicID) == (0..<cpus).map { UInt8($0) })
        #expect(p.processors.allSatisfy { $0.flags & 1 == 1 }, "all enabled")
        #expect(p.processors.filter { $0.flags & 2 != 0 }.map(\.apicID) == [0], "BSP flag only on vCPU 0")
        #expect(p.buses == ["ISA   "])
        #expect(p.ioAPICs.count == 1)
        #expect(p.ioAPICs.first?.id == UInt8(cpus))
        #expect(p.ioAPICs.first?.version == 0x11)
        #expect(p.ioAPICs.first?.address == 0xFEC0_0000)
        #expect(p.ioInterrupts.map(\.sourceIRQ) == Array(0..<16))
        #expect(p.ioInterrupts.allSatisfy { $0.type == 0 && $0.ioAPIC == UInt8(cpus) && $0.pin == $0.sourceIRQ },
                "ISA IRQ n → pin n, as KVM's default routing delivers them")
        #expect(p.localInterrupts.map(\.type) == [3, 1], "ExtINT, NMI")
        #expect(p.localInterrupts.map(\.pin) == [0, 1], "LINT0, LINT1")
    }

    @Test func limitIsDocumentedAndEnforced() throws {
        #expect(MPTable.maxCPUCount == 40)
        let largest = try MPTable.build(cpuCount: MPTable.maxCPUCount)
        #expect(Layout.mpTable + UInt64(largest.count) <= 0xA0000)
        for cpus in [0, -3, MPTable.maxCPUCount + 1, 254] {
            #expect(throws: MPTableError.invalidCPUCount(cpus, maximum: 40)) { try MPTable.build(cpuCount: cpus) }
        }
        let memory = try ACPITestSupport.memory()
        #expect(throws: MPTableError.self) { try MPTable.write(cpuCount: 64, to: memory) }
    }

    @Test func buildIsDeterministic() throws {
        #expect(try MPTable.build(cpuCount: 4) == MPTable.build(cpuCount: 4))
    }
}
