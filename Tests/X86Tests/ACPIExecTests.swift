import Testing
@testable import X86

/// Loads Skiff's tables into ACPICA's AML interpreter (`acpiexec`, package
/// `acpica-tools`) — the same code a Linux guest runs — and evaluates what Linux
/// evaluates: `\_S5_` for power-off and each device's `_CRS`. Skipped without it.
@Suite(.enabled(if: IASL.acpiexecPath != nil, "acpiexec (acpica-tools) is not installed"))
struct ACPIExecTests {
    func run(_ commands: String, devices: Int = 2) throws -> String {
        let image = try ACPITables.build(ACPIConfiguration(cpuCount: 2, virtioDevices: ACPITestSupport.virtioDevices(devices)))
        let tables = ["FACP", "APIC", "DSDT"].compactMap { signature -> [UInt8]? in
            guard let address = image.addresses[signature] else { return nil }
            let offset = Int(address.rawValue - image.base.rawValue)
            return Array(image.bytes[offset..<offset + Int(image.bytes.le32(at: offset + 4))])
        }
        let result = try IASL.acpiexec(tables: tables, commands: commands)
        #expect(result.status == 0, "\(result.log)")
        #expect(!result.log.contains("Firmware Warning"), "\(result.log)")
        #expect(!result.log.contains("ACPI Error") && !result.log.contains("ACPI Exception"), "\(result.log)")
        return result.log
    }

    @Test func s5EvaluatesToSleepType5() throws {
        let log = try run("evaluate \\_S5_")
        #expect(log.contains("[Package] Contains 4 Elements:"))
        #expect(log.contains("[Integer] = 0000000000000005"))
        #expect(log.contains("3 Devices"), "COM1, V000, V001")
    }

    @Test func virtioResourcesDecodeAsLinuxSeesThem() throws {
        let log = try run("resources \\_SB.V001")
        #expect(log.contains("32-Bit Fixed Memory Range Resource"))
        #expect(log.contains("Address : D0001000"))
        #expect(log.contains("Address Length : 00001000"))
        #expect(log.contains("Extended IRQ Resource"))
        #expect(log.contains("Triggering : Edge"))
        #expect(log.contains("Polarity : ActiveHigh"))
        #expect(log.contains("Dword00 : 00000006"))
    }

    @Test func serialResourcesDecode() throws {
        let log = try run("resources \\_SB.COM1", devices: 0)
        #expect(log.contains("Address Minimum : 03F8"))
        #expect(log.contains("Address Length : 08"))
        #expect(log.contains("Dword00 : 00000004"))
    }

    @Test func virtioIdentityEvaluates() throws {
        let log = try run("evaluate \\_SB.V000._HID; evaluate \\_SB.V000._UID; evaluate \\_SB.COM1._HID")
        #expect(log.contains("\"LNRO0005\""))
        #expect(log.contains("000000000105D041"), "EISAID PNP0501")
    }
}
