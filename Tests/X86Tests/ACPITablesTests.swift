import GuestMemory
import Testing
@testable import X86

@Suite struct ACPITablesTests {
    /// Walks RSDP → XSDT → FADT/MADT → DSDT in guest memory, as a guest kernel does.
    struct Walk {
        var rsdp: [UInt8], xsdt: [UInt8], fadt: [UInt8], madt: [UInt8], dsdt: [UInt8]
        var addresses: [String: UInt64]
    }

    func walk(_ config: ACPIConfiguration) throws -> Walk {
        let memory = try ACPITestSupport.memory()
        let rsdpAddress = try ACPITables.write(config, to: memory)
        #expect(rsdpAddress == GuestAddress(Layout.acpiRSDP))
        let rsdp = try memory.read(from: rsdpAddress, count: RSDP.length)
        let xsdtAddress = rsdp.le64(at: 24)
        let xsdt = try ACPITestSupport.table(at: xsdtAddress, in: memory)
        var addresses = ["XSDT": xsdtAddress]
        var tables: [String: [UInt8]] = [:]
        for i in 0..<(xsdt.count - 36) / 8 {
            let address = xsdt.le64(at: 36 + 8 * i)
            let table = try ACPITestSupport.table(at: address, in: memory)
            tables[table.asciiField(at: 0, count: 4)] = table
            addresses[table.asciiField(at: 0, count: 4)] = address
        }
        let fadt = try #require(tables["FACP"])
        let madt = try #require(tables["APIC"])
        let dsdtAddress = fadt.le64(at: FADT.Offset.xDSDT)
        addresses["DSDT"] = dsdtAddress
        let dsdt = try ACPITestSupport.table(at: dsdtAddress, in: memory)
        return Walk(rsdp: rsdp, xsdt: xsdt, fadt: fadt, madt: madt, dsdt: dsdt, addresses: addresses)
    }

    @Test func rsdpHasBothChecksumsAndPointsToTheXSDT() throws {
        let w = try walk(ACPIConfiguration(cpuCount: 2))
        #expect(w.rsdp.asciiField(at: 0, count: 8) == "RSD PTR ")
        #expect(w.rsdp[15] == 2)
        #expect(Array(w.rsdp[0..<20]).mod256Sum() == 0)
        #expect(w.rsdp.mod256Sum() == 0)
        #expect(w.rsdp.le32(at: 20) == 36)
        #expect(w.rsdp.le32(at: 16) == 0, "no RSDT")
        #expect(w.xsdt.asciiField(at: 0, count: 4) == "XSDT")
        #expect(Layout.acpiRSDP % 16 == 0, "Linux scans on 16-byte boundaries")
    }

    @Test(arguments: [1, 2, 4, 64, 254])
    func everyTableSumsToZeroAndFitsItsHeaderLength(cpus: Int) throws {
        let w = try walk(ACPIConfiguration(cpuCount: cpus, virtioDevices: ACPITestSupport.virtioDevices(4)))
        for table in [w.xsdt, w.fadt, w.madt, w.dsdt] {
            #expect(table.mod256Sum() == 0, "\(table.asciiField(at: 0, count: 4)) checksum")
            #expect(Int(table.le32(at: 4)) == table.count)
            #expect(table.asciiField(at: 10, count: 6) == "SKIFF ")
        }
        #expect(w.xsdt.count == 36 + 16, "XSDT lists FADT and MADT")
        for (name, address) in w.addresses {
            #expect(address >= Layout.acpiRSDP && address < Layout.acpiTablesEnd, "\(name)")
        }
    }

    @Test func fadtIsHardwareReducedWithSleepAndResetRegisters() throws {
        let fadt = try walk(ACPIConfiguration(cpuCount: 1)).fadt
        #expect(fadt.count == 276)
        #expect(fadt[8] == 6, "revision")
        #expect(fadt[FADT.Offset.minorRevision] == 5)
        let flags = fadt.le32(at: FADT.Offset.flags)
        #expect(flags & 1 << 20 != 0, "HW_REDUCED_ACPI")
        #expect(flags & 1 << 10 != 0, "RESET_REG_SUP")
        #expect(fadt.le16(at: FADT.Offset.sciInterrupt) == 0)
        #expect(fadt.le32(at: FADT.Offset.dsdt) == 0, "only X_DSDT is set")

        let boot = fadt.le16(at: FADT.Offset.bootArchitectureFlags)
        #expect(boot & 1 << 2 != 0, "VGA not present")
        #expect(boot & 1 << 3 != 0, "MSI not supported")
        #expect(boot & 1 << 5 != 0, "CMOS RTC not present")
        #expect(boot & 0b11 == 0, "no legacy devices, no 8042 probe")

        // Generic Address Structures: SystemIO, 8 bits, offset 0, byte access, port.
        func gas(_ offset: Int) -> [UInt64] {
            [UInt64(fadt[offset]), UInt64(fadt[offset + 1]), UInt64(fadt[offset + 2]),
             UInt64(fadt[offset + 3]), fadt.le64(at: offset + 4)]
        }
        #expect(gas(FADT.Offset.resetRegister) == [1, 8, 0, 1, UInt64(Layout.acpiResetPort)])
        #expect(fadt[FADT.Offset.resetValue] == Layout.acpiResetValue)
        #expect(gas(FADT.Offset.sleepControlRegister) == [1, 8, 0, 1, 0x600])
        #expect(gas(FADT.Offset.sleepStatusRegister) == [1, 8, 0, 1, 0x601])
        #expect(fadt.asciiField(at: FADT.Offset.hypervisorVendorID, count: 5) == "SKIFF")
    }

    @Test(arguments: [1, 3, 40, 254])
    func madtHasOneEnabledLocalAPICPerCPUAndOneIOAPIC(cpus: Int) throws {
        let madt = try walk(ACPIConfiguration(cpuCount: cpus)).madt
        #expect(madt.le32(at: 36) == 0xFEE0_0000)
        var apicIDs: [UInt8] = []
        var ioAPICs: [(id: UInt8, address: UInt32, gsiBase: UInt32)] = []
        var overrides = 0, nmis = 0
        var offset = 44
        while offset < madt.count {
            let type = madt[offset], length = Int(madt[offset + 1])
            #expect(length >= 2 && offset + length <= madt.count)
            switch type {
            case 0:
                #expect(length == 8)
                #expect(madt[offset + 2] == madt[offset + 3], "UID = APIC id")
                #expect(madt.le32(at: offset + 4) & 1 == 1, "enabled")
                apicIDs.append(madt[offset + 3])
            case 1:
                #expect(length == 12)
                ioAPICs.append((madt[offset + 2], madt.le32(at: offset + 4), madt.le32(at: offset + 8)))
            case 2: overrides += 1
            case 4: nmis += 1
            default: Issue.record("unexpected MADT entry type \(type)")
            }
            offset += max(length, 2)
        }
        #expect(offset == madt.count)
        #expect(apicIDs == (0..<cpus).map { UInt8($0) })
        #expect(ioAPICs.count == 1)
        #expect(ioAPICs.first?.address == 0xFEC0_0000)
        #expect(ioAPICs.first?.gsiBase == 0)
        #expect(ioAPICs.first?.id == UInt8(cpus), "IOAPIC id follows the CPUs' APIC ids")
        #expect(overrides == 0, "ISA IRQs identity-mapped, as KVM's default routing is")
        #expect(nmis == 1)
    }

    @Test func invalidCPUCountsAreRejected() {
        for cpus in [0, -1, 255, 1000] {
            #expect(throws: ACPIError.invalidCPUCount(cpus, supported: 1...254)) {
                try ACPITables.build(ACPIConfiguration(cpuCount: cpus))
            }
        }
    }

    @Test func virtioWindowsAbove4GiBAreRejected() {
        let bad = VirtioMMIODeviceResource(base: 0xFFFF_F800, size: 0x1000, irq: 5)
        #expect(throws: ACPIError.invalidDeviceWindow(base: 0xFFFF_F800, size: 0x1000)) {
            try ACPITables.build(ACPIConfiguration(cpuCount: 1, virtioDevices: [bad]))
        }
        let edge = VirtioMMIODeviceResource(base: 0xFFFF_F000, size: 0x1000, irq: 5)
        #expect(throws: Never.self) { try ACPITables.build(ACPIConfiguration(cpuCount: 1, virtioDevices: [edge])) }
    }

    @Test func virtioIRQsOutsideTheIOAPICAreRejected() {
        let bad = VirtioMMIODeviceResource(base: 0xD000_0000, size: 0x1000, irq: 24)
        #expect(throws: ACPIError.invalidDeviceIRQ(24)) {
            try ACPITables.build(ACPIConfiguration(cpuCount: 1, virtioDevices: [bad]))
        }
    }

    @Test func writeFailsCleanlyWithoutRAMAtTheBIOSArea() throws {
        let memory = try GuestMemory(ranges: [(GuestAddress(0), 0x80000)])
        #expect(throws: GuestMemoryError.self) { try ACPITables.write(ACPIConfiguration(cpuCount: 1), to: memory) }
    }

    @Test func tablesStayFarBelowTheirLimitAtTheMaximum() throws {
        let image = try ACPITables.build(ACPIConfiguration(
            cpuCount: 254, virtioDevices: ACPITestSupport.virtioDevices(Layout.virtioMMIOMaxDevices)))
        #expect(image.bytes.count < Int(Layout.acpiTablesEnd - Layout.acpiRSDP))
        #expect(image.addresses["DSDT"].map { $0.rawValue % 16 } == 0)
    }
}
