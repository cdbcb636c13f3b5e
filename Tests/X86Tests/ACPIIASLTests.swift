import Foundation
import Testing
@testable import X86

/// Checks the tables against ACPICA's `iasl` (Debian package `acpica-tools`, listed
/// in scripts/test-deps.txt): the guest's own ACPI code is ACPICA, so a clean
/// disassembly, and AML identical to what `iasl` compiles from the equivalent ASL,
/// is the closest check short of booting Linux. Skipped when `iasl` is missing.
@Suite(.enabled(if: IASL.path != nil, "iasl (acpica-tools) is not installed"))
struct ACPIIASLTests {
    @Test func dsdtDecompilesCleanly() throws {
        let dsdt = try DSDT.build(virtioDevices: ACPITestSupport.virtioDevices(3))
        let result = try IASL.disassemble(dsdt)
        #expect(result.status == 0, "\(result.log)")
        #expect(!result.log.contains("Error") && !result.log.contains("Warning"), "\(result.log)")
        #expect(result.source.contains("LNRO0005"))
        #expect(result.source.contains("_S5_"))
        #expect(result.source.contains("Name (\\_S5, Package (0x04)"))
        #expect(result.source.contains("EisaId (\"PNP0501\")"))
        #expect(result.source.contains("Device (V002)"))
        #expect(result.source.contains("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )"))
        #expect(result.source.contains("0xD0002000,         // Address Base"))
    }

    @Test func dataTablesDecodeWithoutComplaints() throws {
        let image = try ACPITables.build(ACPIConfiguration(cpuCount: 2))
        var decoded: [String: String] = [:]
        for signature in ["XSDT", "FACP", "APIC"] {
            let bytes = try #require(table(signature, in: image))
            let result = try IASL.disassemble(bytes)
            #expect(result.status == 0, "\(signature): \(result.log)")
            #expect(!result.log.contains("Warning") && !result.log.contains("Error"), "\(signature): \(result.log)")
            #expect(!result.source.contains("Incorrect"), "\(signature): \(result.source)")
            decoded[signature] = result.source
        }
        let fadt = decoded["FACP"] ?? ""
        #expect(fadt.contains("Hardware Reduced (V5) : 1"))
        #expect(fadt.contains("Reset Register Supported (V2) : 1"))
        #expect(fadt.contains("CMOS RTC Not Present (V5) : 1"))
        #expect(fadt.contains("Address : 0000000000000600"))
        #expect(fadt.contains("Address : 0000000000000601"))
        #expect(fadt.contains("Address : 0000000000000602"))
        let madt = decoded["APIC"] ?? ""
        #expect(madt.components(separatedBy: "[Processor Local APIC]").count - 1 == 2)
        #expect(madt.components(separatedBy: "[I/O APIC]").count - 1 == 1)
    }

    /// The DSDT Skiff builds, written by hand in ASL: `iasl` must produce the same AML.
    @Test func dsdtMatchesIASLCompilingTheEquivalentASL() throws {
        let asl = """
            Name (\\_S5, Package () { 5, 5, 0, 0 })
            Scope (\\_SB)
            {
                Device (COM1)
                {
                    Name (_HID, EisaId ("PNP0501"))
                    Name (_UID, 0)
                    Name (_CRS, ResourceTemplate ()
                    {
                        IO (Decode16, 0x3F8, 0x3F8, 0x01, 0x08)
                        Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 4 }
                    })
                }
                Device (V000)
                {
                    Name (_HID, "LNRO0005")
                    Name (_UID, 0)
                    Name (_CCA, One)
                    Name (_CRS, ResourceTemplate ()
                    {
                        Memory32Fixed (ReadWrite, 0xD0000000, 0x1000)
                        Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 5 }
                    })
                }
                Device (V001)
                {
                    Name (_HID, "LNRO0005")
                    Name (_UID, 1)
                    Name (_CCA, One)
                    Name (_CRS, ResourceTemplate ()
                    {
                        Memory32Fixed (ReadWrite, 0xD0001000, 0x1000)
                        Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 6 }
                    })
                }
            }
            """
        let expected = try #require(try IASL.compile(asl))
        let dsdt = try DSDT.build(virtioDevices: ACPITestSupport.virtioDevices(2))
        #expect(IASL.firstDifference(Array(dsdt[ACPITableHeader.length...]), expected) == nil)
    }

    /// AML writer cases, each against `iasl` compiling the same ASL.
    @Test func amlWriterMatchesIASL() throws {
        var asl = ""
        var ours: [UInt8] = []
        func add(_ source: String, _ bytes: [UInt8]) { asl += source + "\n"; ours += bytes }

        for (i, value) in [0, 1, 0x2A, 0xFF, 0x100, 0xFFFF, 0x1_0000, 0xFFFF_FFFF, 0x1_0000_0000, 0x1234_5678_9ABC_DEF0]
            .enumerated() {
            add("Name (I00\(i), 0x\(String(value, radix: 16)))", try AML.nameObject("I00\(i)", AML.integer(UInt64(value))))
        }
        add("Name (STR0, \"LNRO0005\")", try AML.nameObject("STR0", AML.string("LNRO0005")))
        add("Name (EIS0, EisaId (\"PNP0A03\"))", try AML.nameObject("EIS0", AML.eisaID("PNP0A03")))
        add("Name (PKG0, Package () { 1, 0x1000, \"A\", Package () { 0 } })",
            try AML.nameObject("PKG0", AML.package([AML.integer(1), AML.integer(0x1000), AML.string("A"), AML.package([AML.integer(0)])])))
        // Buffers long enough for the one-, two- and three-byte PkgLength forms.
        for (i, size) in [10, 61, 62, 100, 4090, 5000].enumerated() {
            let list = [String](repeating: "0x00", count: size).joined(separator: ", ")
            add("Name (BUF\(i), Buffer () { \(list) })",
                try AML.nameObject("BUF\(i)", AML.buffer([UInt8](repeating: 0, count: size))))
        }
        add("""
            Device (DEV0)
            {
                Method (_STA, 0, NotSerialized) { Return (0x0F) }
                Method (MTH1, 3, Serialized) { Return ("x") }
                Name (_CRS, ResourceTemplate ()
                {
                    Interrupt (ResourceConsumer, Level, ActiveLow, Shared) { 9, 0x10000 }
                    Memory32Fixed (ReadOnly, 0xFEC00000, 0x1000)
                    IO (Decode16, 0x600, 0x600, 0x01, 0x03)
                })
            }
            """,
            try AML.device("DEV0", [
                AML.method("_STA", [AML.returnValue(AML.integer(0x0F))]),
                AML.method("MTH1", argumentCount: 3, serialized: true, [AML.returnValue(AML.string("x"))]),
                AML.nameObject("_CRS", AML.resourceTemplate([
                    AML.interrupt([9, 0x1_0000], trigger: .level, polarity: .activeLow, shared: true),
                    AML.memory32Fixed(base: 0xFEC0_0000, length: 0x1000, writable: false),
                    AML.io(minimum: 0x600, maximum: 0x600, alignment: 1, length: 3),
                ])),
            ]))
        // A scope whose body needs a three-byte PkgLength.
        let wide = (0..<2000).map { "Name (N\(String(format: "%03X", $0)), \($0 % 2))" }.joined(separator: "\n")
        add("Scope (\\_SB.DEV0) {\n\(wide)\n}",
            try AML.scope("\\_SB_.DEV0", (0..<2000).map { try AML.nameObject("N" + String(format: "%03X", $0), AML.integer(UInt64($0 % 2))) }))

        let expected = try #require(try IASL.compile("Scope (\\_SB) { Device (DEV0) {} }\n" + asl))
        let prefix = try AML.scope("\\_SB_", [AML.device("DEV0", [])])
        #expect(expected.count == prefix.count + ours.count)
        #expect(IASL.firstDifference(Array(expected.dropFirst(prefix.count)), ours) == nil)
    }

    func table(_ signature: String, in image: ACPITables.Image) -> [UInt8]? {
        guard let address = image.addresses[signature] else { return nil }
        let offset = Int(address.rawValue - image.base.rawValue)
        let length = Int(image.bytes.le32(at: offset + 4))
        return Array(image.bytes[offset..<offset + length])
    }
}

/// Runs ACPICA's `iasl` (and `acpiexec`, from the same package) in a scratch directory.
enum IASL {
    static let path = find("iasl")
    static let acpiexecPath = find("acpiexec")

    static func find(_ tool: String) -> String? {
        ["/usr/bin/", "/usr/local/bin/", "/bin/"].map { $0 + tool }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Loads `tables` into ACPICA's AML interpreter (`acpiexec`) and runs the
    /// semicolon-separated debugger `commands`; returns the exit status and output.
    static func acpiexec(tables: [[UInt8]], commands: String) throws -> (status: Int32, log: String) {
        try withScratchDirectory { dir in
            var files: [String] = []
            for (i, table) in tables.enumerated() {
                let file = dir.appendingPathComponent("table\(i).dat")
                try Data(table).write(to: file)
                files.append(file.path)
            }
            return try run(["-b", commands] + files, in: dir, tool: acpiexecPath)
        }
    }

    struct Disassembly { var status: Int32; var log: String; var source: String }

    /// `iasl -d` on one table; returns the exit status, console output and .dsl text.
    static func disassemble(_ table: [UInt8]) throws -> Disassembly {
        try withScratchDirectory { dir in
            let input = dir.appendingPathComponent("table.dat")
            try Data(table).write(to: input)
            let (status, log) = try run(["-d", input.path], in: dir)
            let source = (try? String(contentsOf: dir.appendingPathComponent("table.dsl"), encoding: .utf8)) ?? ""
            return Disassembly(status: status, log: log, source: source)
        }
    }

    /// Compiles `body` inside a DSDT DefinitionBlock with name-path optimization off
    /// (`-on`, so names keep their root prefix, as Skiff writes them; integers still
    /// become Zero/One); returns the AML after the table header, or nil with the log
    /// recorded as an issue.
    static func compile(_ body: String) throws -> [UInt8]? {
        try withScratchDirectory { dir in
            let input = dir.appendingPathComponent("dsdt.asl")
            let source = "DefinitionBlock (\"\", \"DSDT\", 2, \"SKIFF\", \"SKIFFVM\", 1)\n{\n\(body)\n}\n"
            try source.write(to: input, atomically: true, encoding: .utf8)
            let (status, log) = try run(["-on", "-p", dir.appendingPathComponent("out").path, input.path], in: dir)
            guard status == 0, let aml = try? Data(contentsOf: dir.appendingPathComponent("out.aml")) else {
                Issue.record("iasl failed (\(status)): \(log)")
                return nil
            }
            return Array(aml.dropFirst(ACPITableHeader.length))
        }
    }

    /// Where two byte strings first differ, with a little context, or nil if equal.
    static func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> String? {
        guard a != b else { return nil }
        let i = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
        let context = { (x: [UInt8]) in x[max(0, i - 8)..<min(x.count, i + 8)].map { String($0, radix: 16) }.joined(separator: " ") }
        return "lengths \(a.count)/\(b.count), first difference at \(i): [\(context(a))] vs [\(context(b))]"
    }

    private static func run(_ arguments: [String], in dir: URL, tool: String? = path) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool ?? "/nonexistent")
        process.arguments = arguments
        process.currentDirectoryURL = dir
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    private static func withScratchDirectory<T>(_ body: (URL) throws -> T) throws -> T {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-iasl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        return try body(dir)
    }
}
