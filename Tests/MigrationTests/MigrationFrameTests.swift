import Foundation
import Migration
import Posix
import Testing

/// An in-memory ByteStream: what is written can be read back; reading past the
/// end is the peer closing.
final class MemoryStream: ByteStream {
    var bytes: [UInt8]
    var position = 0
    init(_ bytes: [UInt8] = []) { self.bytes = bytes }
    func write(_ b: UnsafeRawBufferPointer) throws { bytes += b }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws {
        guard bytes.count - position >= buffer.count else { throw ByteStreamError.endOfStream }
        let slice = Array(bytes[position..<(position + buffer.count)])
        slice.withUnsafeBytes { buffer.copyMemory(from: $0) }
        position += buffer.count
    }
    func flush() throws {}
    func close() {}
}

struct MigrationFrameTests {
    private func header(kind: UInt16, flags: UInt16 = 0, reserved: UInt32 = 0, length: UInt64) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 16)
        b.withUnsafeMutableBytes {
            $0.storeBytes(of: kind.littleEndian, toByteOffset: 0, as: UInt16.self)
            $0.storeBytes(of: flags.littleEndian, toByteOffset: 2, as: UInt16.self)
            $0.storeBytes(of: reserved.littleEndian, toByteOffset: 4, as: UInt32.self)
            $0.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt64.self)
        }
        return b
    }

    @Test func framesRoundTrip() throws {
        let s = MemoryStream()
        try MigrationFrame.write(.start, payload: MigrationVersion.startPayload(), to: s)
        try MigrationFrame.write(.commit, payload: [1], to: s)
        let h = try MigrationFrame.readHeader(from: s)
        #expect(h.kind == .start)
        #expect(try MigrationVersion.check(startPayload: try MigrationFrame.readPayload(h, from: s)) == MigrationVersion.current)
        let c = try MigrationFrame.readHeader(from: s)
        #expect(c == MigrationFrame.Header(kind: .commit, length: 1))
    }

    @Test func hostileHeadersAreClearErrors() {
        let cases: [([UInt8], String)] = [
            (header(kind: 99, length: 0), "unknown message kind 99"),
            (header(kind: 1, flags: 1, length: 0), "flags"),
            (header(kind: 1, reserved: 7, length: 0), "reserved"),
            (header(kind: 2, length: 1 << 40), "at most"),
            (header(kind: 3, length: UInt64.max), "at most"),
            (header(kind: 6, length: 2), "at most"),
        ]
        for (bytes, needle) in cases {
            do {
                _ = try MigrationFrame.parseHeader(bytes)
                Issue.record("accepted \(bytes)")
            } catch let e as MigrationError {
                #expect(e.kind == .malformed)
                #expect(e.message.contains(needle), "\(e.message)")
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
    }

    @Test func aTruncatedStreamIsEndOfStream() {
        let s = MemoryStream(Array(header(kind: 1, length: 12).prefix(9)))
        #expect(throws: ByteStreamError.endOfStream) { try MigrationFrame.readHeader(from: s) }
    }

    @Test func versionsAreCheckedClearly() {
        #expect(throws: MigrationError.self) { try MigrationVersion.check(startPayload: Array("NOTSKIFF\u{1}\0\0\0".utf8)) }
        do {
            _ = try MigrationVersion.check(startPayload: MigrationVersion.startPayload(version: 99))
            Issue.record("version 99 accepted")
        } catch let e as MigrationError {
            #expect(e.kind == .refused)
            #expect(e.message.contains("version 99"))
        } catch { Issue.record("\(error)") }
    }

    @Test func memoryRunsAreChecked() throws {
        let run = MemoryRun(guestAddress: 0x10_0000, pages: 3, encoding: .data)
        #expect(try MemoryRun.parse(run.header(), frameLength: run.frameLength) == run)
        let zero = MemoryRun(guestAddress: 0, pages: 1 << 20, encoding: .zero)
        #expect(try MemoryRun.parse(zero.header(), frameLength: 16) == zero)
        let bad: [(MemoryRun, UInt64, String)] = [
            (MemoryRun(guestAddress: 0x1001, pages: 1, encoding: .data), 16 + 4096, "page-aligned"),
            (MemoryRun(guestAddress: 0, pages: 0, encoding: .zero), 16, "non-empty"),
            (MemoryRun(guestAddress: 0, pages: 257, encoding: .data), 16 + 257 * 4096, "at most 256"),
            (MemoryRun(guestAddress: 0, pages: 2, encoding: .data), 16 + 4096, "expected"),
            (MemoryRun(guestAddress: 0, pages: 2, encoding: .zero), 16 + 4096, "expected"),
        ]
        for (r, length, needle) in bad {
            do {
                _ = try MemoryRun.parse(r.header(), frameLength: length)
                Issue.record("accepted \(r)")
            } catch let e as MigrationError {
                #expect(e.message.contains(needle), "\(e.message)")
            }
        }
        var unknown = run.header()
        unknown[12] = 9
        #expect(throws: MigrationError.self) { try MemoryRun.parse(unknown, frameLength: run.frameLength) }
    }

    @Test func endpointsParse() throws {
        #expect(try MigrationEndpoint(parsing: "tcp:127.0.0.1:6000") == MigrationEndpoint(host: "127.0.0.1", port: 6000))
        #expect(try MigrationEndpoint(parsing: "tcp:[::1]:7") == MigrationEndpoint(host: "::1", port: 7))
        for bad in ["unix:/x", "tcp:host", "tcp::5", "tcp:h:99999", "file:///x"] {
            #expect(throws: MigrationError.self, "\(bad)") { try MigrationEndpoint(parsing: bad) }
        }
    }

    @Test func onlyAddressesAreNumericAndNamesResolveToOne() throws {
        #expect(MigrationEndpoint(host: "192.0.2.10", port: 1).isNumeric)
        #expect(MigrationEndpoint(host: "::1", port: 1).isNumeric)
        for name in ["localhost", "hostB", "192.0.2", "1.2.3.4.5", "::g"] {
            #expect(!MigrationEndpoint(host: name, port: 1).isNumeric, "\(name)")
        }
        // /etc/hosts has localhost on every Debian machine: a loopback address comes back.
        let local = try MigrationEndpoint(host: "localhost", port: 6000).numeric()
        #expect(local.isNumeric && local.port == 6000 && ["127.0.0.1", "::1"].contains(local.host), "\(local)")
        #expect(try MigrationEndpoint(host: "192.0.2.10", port: 7).numeric() == MigrationEndpoint(host: "192.0.2.10", port: 7))
        #expect(throws: MigrationError.self) { try MigrationEndpoint(host: "no-such-host.invalid", port: 1).numeric() }
    }

    @Test func securityNeedsAKeyOrAnExplicitInsecureFlag() throws {
        #expect(try MigrationSecurity.from(keyPath: nil, insecure: true) == .insecure)
        do {
            _ = try MigrationSecurity.from(keyPath: nil, insecure: false)
            Issue.record("no key accepted")
        } catch let e as MigrationError {
            #expect(e.message.contains("a migration key is needed"))
        }
        #expect(throws: MigrationError.self) { try MigrationSecurity.from(keyPath: "/k", insecure: true) }
    }

    @Test func configGarbageIsMalformed() {
        #expect(throws: MigrationError.self) { try MigrationConfig.decode(Array("{".utf8)) }
        #expect(throws: MigrationError.self) { try MigrationConfig.decode(Array("[]".utf8)) }
    }

    @Test func tcpStreamCarriesBigAndSmallWrites() throws {
        let listener = try TCPListener(MigrationEndpoint(host: "127.0.0.1", port: 0))
        let payload = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let sent = DispatchSemaphore(value: 0)
        let port = listener.port
        Thread.detachNewThread {
            let c = try! TCPStream.connect(to: MigrationEndpoint(host: "127.0.0.1", port: port))
            try! MigrationFrame.write(.iterationEnd, payload: [1, 2, 3, 4, 5, 6, 7, 8], to: c)
            try! payload.withUnsafeBytes { try c.write($0) }
            try! c.flush()
            c.close()
            sent.signal()
        }
        let s = try listener.accept()
        let h = try MigrationFrame.readHeader(from: s)
        #expect(try MigrationFrame.readPayload(h, from: s) == [1, 2, 3, 4, 5, 6, 7, 8])
        var got = [UInt8](repeating: 0, count: payload.count)
        try got.withUnsafeMutableBytes { try s.read(into: $0) }
        #expect(got == payload)
        sent.wait()
        var one = [UInt8](repeating: 0, count: 1)
        #expect(throws: ByteStreamError.endOfStream) { try one.withUnsafeMutableBytes { try s.read(into: $0) } }
    }
}
