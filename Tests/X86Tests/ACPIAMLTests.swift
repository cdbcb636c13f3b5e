import Testing
@testable import X86

/// Golden encodings derived from the ACPI 6.5 AML grammar (chapter 20).
@Suite struct AMLWriterTests {
    @Test(arguments: [
        (0, [0x01]),
        (62, [0x3F]), // largest one-byte form: total 63
        (63, [0x41, 0x04]), // total 65 = 0x041: lead 0b01 << 6 | 0x1, then 0x04
        (4093, [0x4F, 0xFF]), // total 0xFFF, the largest two-byte form
        (4094, [0x81, 0x00, 0x01]), // total 0x1001 needs three bytes
        ((1 << 20) - 4, [0x8F, 0xFF, 0xFF]), // total 0xFFFFF
        ((1 << 20) - 3, [0xC1, 0x00, 0x00, 0x01]), // total 0x100001
        ((1 << 28) - 5, [0xCF, 0xFF, 0xFF, 0xFF]), // total 0xFFFFFFF, the largest
    ] as [(Int, [UInt8])])
    func packageLengthUsesAllFourForms(content: Int, expected: [UInt8]) throws {
        #expect(try AML.packageLength(content) == expected)
    }

    @Test func packageLengthBeyond28BitsIsRejected() {
        #expect(throws: AMLError.self) { try AML.packageLength((1 << 28) - 4) }
    }

    @Test(arguments: [
        (0, [0x00]), (1, [0x01]), (2, [0x0A, 0x02]), (0xFF, [0x0A, 0xFF]),
        (0x100, [0x0B, 0x00, 0x01]), (0xFFFF, [0x0B, 0xFF, 0xFF]),
        (0x1_0000, [0x0C, 0x00, 0x00, 0x01, 0x00]), (0xFFFF_FFFF, [0x0C, 0xFF, 0xFF, 0xFF, 0xFF]),
        (0x1_0000_0000, [0x0E, 0, 0, 0, 0, 1, 0, 0, 0]),
    ] as [(UInt64, [UInt8])])
    func integersUseTheShortestEncoding(value: UInt64, expected: [UInt8]) {
        #expect(AML.integer(value) == expected)
    }

    @Test func eisaIDCompression() throws {
        #expect(try AML.eisaIDValue("PNP0501") == 0x0105_D041)
        #expect(try AML.eisaIDValue("PNP0A03") == 0x030A_D041)
        #expect(try AML.eisaID("PNP0501") == [0x0C, 0x41, 0xD0, 0x05, 0x01])
        for bad in ["PNP050", "pnp0501", "PNP05G1", "PNP+501", "1NP0501"] {
            #expect(throws: AMLError.invalidEISAID(bad)) { try AML.eisaIDValue(bad) }
        }
    }

    @Test func namesAndPaths() throws {
        #expect(try AML.name("_HID") == Array("_HID".utf8))
        #expect(try AML.name("_SB") == Array("_SB_".utf8), "short segments are padded with _")
        #expect(try AML.name("\\_SB_") == [0x5C] + Array("_SB_".utf8))
        #expect(try AML.name("\\_SB_.COM1") == [0x5C, 0x2E] + Array("_SB_COM1".utf8))
        #expect(try AML.name("A.B.C") == [0x2F, 3] + Array("A___B___C___".utf8))
        for bad in ["", "1ABC", "abcd", "TOOLONG", "A..B", "\\", "A-B"] {
            #expect(throws: AMLError.self) { try AML.name(bad) }
        }
    }

    @Test func stringsBuffersAndPackages() throws {
        #expect(try AML.string("LNRO0005") == [0x0D] + Array("LNRO0005".utf8) + [0])
        #expect(throws: AMLError.self) { try AML.string("é") }
        #expect(try AML.buffer([0xAA, 0xBB]) == [0x11, 0x05, 0x0A, 0x02, 0xAA, 0xBB])
        // Package () { 5, 5, 0, 0 }
        let five = AML.integer(5), zero = AML.integer(0)
        #expect(try AML.package([five, five, zero, zero]) == [0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00])
        // A buffer over 63 bytes takes a two-byte PkgLength and a byte-sized size.
        let big = try AML.buffer([UInt8](repeating: 0, count: 100))
        #expect(Array(big.prefix(5)) == [0x11, 0x48, 0x06, 0x0A, 100]) // total 104 = 0x068
        #expect(big.count == 1 + 2 + 2 + 100)
    }

    @Test func deviceScopeMethodAndReturn() throws {
        // Method (_STA, 0, NotSerialized) { Return (0x0F) }
        let sta = try AML.method("_STA", [AML.returnValue(AML.integer(0x0F))])
        #expect(sta == [0x14, 0x09] + Array("_STA".utf8) + [0x00, 0xA4, 0x0A, 0x0F])
        #expect(try AML.method("M", argumentCount: 2, serialized: true, [])[6] == 0x0A)
        #expect(try AML.device("COM1", []) == [0x5B, 0x82, 0x05] + Array("COM1".utf8))
        #expect(try AML.scope("\\_SB_", []) == [0x10, 0x06, 0x5C] + Array("_SB_".utf8))
        #expect(try AML.nameObject("_UID", AML.integer(0)) == [0x08] + Array("_UID".utf8) + [0x00])
    }

    @Test func resourceDescriptors() throws {
        // Memory32Fixed (ReadWrite, 0xD0000000, 0x1000)
        #expect(AML.memory32Fixed(base: 0xD000_0000, length: 0x1000)
            == [0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x10, 0x00, 0x00])
        // IO (Decode16, 0x3F8, 0x3F8, 0x01, 0x08)
        #expect(AML.io(minimum: 0x3F8, maximum: 0x3F8, alignment: 1, length: 8)
            == [0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08])
        // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 4 }
        #expect(try AML.interrupt([4], trigger: .edge, polarity: .activeHigh)
            == [0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00])
        // Interrupt (ResourceConsumer, Level, ActiveLow, Shared) { 5, 0x10000 }
        #expect(try AML.interrupt([5, 0x1_0000], trigger: .level, polarity: .activeLow, shared: true)
            == [0x89, 0x0A, 0x00, 0x0D, 0x02, 0x05, 0, 0, 0, 0x00, 0x00, 0x01, 0x00])
        #expect(throws: AMLError.self) { try AML.interrupt([], trigger: .edge, polarity: .activeHigh) }
        // ResourceTemplate () { } is a two-byte buffer holding the End Tag.
        #expect(try AML.resourceTemplate([]) == [0x11, 0x05, 0x0A, 0x02, 0x79, 0x00])
    }
}

@Suite struct ACPIDSDTTests {
    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<$0 + needle.count]) == needle }
    }

    @Test func dsdtHasS5SerialAndOneVirtioDevicePerResource() throws {
        let devices = ACPITestSupport.virtioDevices(3)
        let dsdt = try DSDT.build(virtioDevices: devices)
        #expect(dsdt.asciiField(at: 0, count: 4) == "DSDT")
        #expect(dsdt.mod256Sum() == 0)
        #expect(Int(dsdt.le32(at: 4)) == dsdt.count)
        #expect(contains(dsdt, [0x08, 0x5C] + Array("_S5_".utf8) + [0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00]))
        #expect(contains(dsdt, Array("COM1".utf8) + [0x08] + Array("_HID".utf8) + [0x0C, 0x41, 0xD0, 0x05, 0x01]))
        #expect(contains(dsdt, [0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08]))
        for (i, device) in devices.enumerated() {
            #expect(contains(dsdt, Array("V00\(i)".utf8)))
            let window = AML.memory32Fixed(base: UInt32(device.base), length: UInt32(device.size))
            let irq = try AML.interrupt([device.irq], trigger: .edge, polarity: .activeHigh)
            #expect(contains(dsdt, window + irq + [0x79, 0x00]))
            #expect(contains(dsdt, [0x08] + Array("_UID".utf8) + AML.integer(UInt64(i))))
        }
        #expect(dsdt.count(where: { $0 == 0x0D }) >= 3, "one LNRO0005 string per device")
    }

    @Test func deviceNames() {
        #expect(DSDT.deviceName(0) == "V000")
        #expect(DSDT.deviceName(42) == "V042")
        #expect(DSDT.deviceName(999) == "V999")
    }

    @Test func tooManyDevicesAreRejected() {
        let devices = [VirtioMMIODeviceResource](repeating: VirtioMMIODeviceResource(index: 0), count: 1001)
        #expect(throws: ACPIError.tooManyDevices(1001, maximum: 1000)) { try DSDT.build(virtioDevices: devices) }
    }
}
