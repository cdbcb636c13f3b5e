import Foundation
import Testing
@testable import Network

/// TAP tests need CAP_NET_ADMIN (root) and the tun device.
let canOpenTaps = getuid() == 0 && FileManager.default.fileExists(atPath: "/dev/net/tun")

@Suite struct MACAddressTests {
    @Test func parsesAndPrints() throws {
        let mac = try MACAddress(parsing: "52:54:00:AB:cd:0f")
        #expect(mac.bytes == [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f])
        #expect(mac.description == "52:54:00:ab:cd:0f")
        #expect(try MACAddress(parsing: "02-00-00-00-00-01").bytes == [2, 0, 0, 0, 0, 1])
    }

    @Test(arguments: ["", "52:54:00:12:34", "52:54:00:12:34:56:78", "52:54:00:12:34:5g", "525:4:00:12:34:56", "5:54:00:12:34:56", "52:54:00:12:34:56:"])
    func rejectsMalformed(text: String) {
        #expect(throws: MACAddressError.malformed(text)) { try MACAddress(parsing: text) }
    }

    @Test func rejectsMulticast() {
        #expect(throws: MACAddressError.multicast("01:00:5e:00:00:01")) { try MACAddress(parsing: "01:00:5e:00:00:01") }
        #expect("\(MACAddressError.multicast("x"))".contains("multicast"))
    }

    @Test func randomIsLocalUnicast() {
        for _ in 0..<64 {
            let m = MACAddress.random()
            #expect(m.isLocallyAdministered && !m.isMulticast)
        }
        #expect(MACAddress.random() != MACAddress.random())
    }
}

@Suite struct TapTests {
    @Test(arguments: ["", "this-name-is-too-long", "a/b", "a b", "a:1", ".."])
    func rejectsBadNames(name: String) {
        #expect(throws: TapError.invalidName(name)) { try Tap(name: name) }
    }

    @Test func messagesSayWhatToDo() {
        #expect(TapError.notPermitted("skiff0").description.hasPrefix("TAP skiff0 not permitted: run as root or give CAP_NET_ADMIN"))
        #expect(TapError.noTunDevice.description.hasPrefix("no /dev/net/tun"))
    }

    @Test(.enabled(if: canOpenTaps, "needs root and /dev/net/tun"))
    func createsAndRemovesATap() throws {
        let name = "sknt\(getpid() % 100_000)"
        do {
            let tap = try Tap(name: name)
            #expect(tap.name == name)
            #expect(FileManager.default.fileExists(atPath: "/sys/class/net/\(name)/tun_flags"))
            let flags = try String(contentsOfFile: "/sys/class/net/\(name)/tun_flags", encoding: .utf8)
            #expect(UInt32(flags.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst(2), radix: 16) == 0x5002) // TAP|NO_PI|VNET_HDR
            try tap.setOffloads(Tap.Offload.checksum | Tap.Offload.tso4 | Tap.Offload.tso6)
            try tap.setOffloads(0)
            var byte: UInt8 = 0
            #expect(try withUnsafeMutableBytes(of: &byte) { try tap.read(into: $0) } == nil) // nothing yet, non-blocking
            #expect(throws: TapError.busy(name)) { try Tap(name: name) }
        }
        // Not persistent: gone with its last descriptor.
        #expect(!FileManager.default.fileExists(atPath: "/sys/class/net/\(name)"))
    }

    @Test(.enabled(if: canOpenTaps, "needs root and /dev/net/tun"))
    func refusesAnInterfaceThatIsNotATap() {
        #expect(throws: TapError.notATap("lo")) { try Tap(name: "lo") }
    }
}
