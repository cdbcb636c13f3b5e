import Devices
import Events
import Foundation
import Testing
@testable import VMM

/// ConsoleInput on a real event loop and UART, fed from a pipe or a file
/// standing in for stdin; the test plays the guest by reading the UART.
@Suite(.serialized)
struct ConsoleInputTests {
    final class Rig {
        let serial = Serial8250(interrupt: nil) { _ in }
        let loop: EventLoop
        init() throws {
            loop = try EventLoop()
            try loop.start()
        }
        deinit {
            loop.stop()
            loop.join()
        }

        /// Reads `count` bytes from the UART as a polling guest would.
        func guestReads(_ count: Int, timeout: Double = 10) -> [UInt8] {
            var got: [UInt8] = []
            let deadline = Date().addingTimeInterval(timeout)
            let byte = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
            defer { byte.deallocate() }
            while got.count < count && Date() < deadline {
                serial.read(offset: 5, into: byte)  // LSR
                guard byte[0] & 0x01 != 0 else { usleep(1000); continue }
                serial.read(offset: 0, into: byte)
                got.append(byte[0])
            }
            return got
        }
    }

    static let FIONREAD: UInt = 0x541B

    func pipePair() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        try #require(pipe(&fds) == 0)
        return (fds[0], fds[1])
    }

    func unread(_ fd: Int32) -> Int32 {
        var n: Int32 = -1
        _ = ioctl(fd, ConsoleInputTests.FIONREAD, &n)
        return n
    }

    func waitUntil(_ timeout: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() && Date() < deadline { usleep(2000) }
        return condition()
    }

    @Test func aPipeWaitsWhileTheFIFOIsFullThenArrivesInOrder() throws {
        let rig = try Rig(), p = try pipePair()
        defer { close(p.read) }
        let data = (0..<20_000).map { UInt8($0 % 251) }
        #expect(data.withUnsafeBytes { write(p.write, $0.baseAddress, $0.count) } == data.count)
        let console = ConsoleInput(serial: rig.serial, loop: rig.loop, escapeEnabled: false, fd: p.read) {}
        console.start()
        defer { console.stop() }

        #expect(waitUntil { rig.serial.inputRoom == 0 })
        usleep(100_000)
        // One read's worth at most is held back; the rest stays in the pipe.
        #expect(unread(p.read) >= Int32(data.count - Serial8250.receiveCapacity - ConsoleInput.readSize))
        #expect(rig.guestReads(data.count) == data)

        close(p.write)  // EOF: stdin leaves the event loop
        #expect(waitUntil { !console.isWatching })
    }

    @Test func aTerminalIsReadEvenWhenTheGuestIsNotSoCtrlAXStillQuits() throws {
        let rig = try Rig(), p = try pipePair()
        defer { close(p.read); close(p.write) }
        let quit = DispatchSemaphore(value: 0)
        let console = ConsoleInput(serial: rig.serial, loop: rig.loop, escapeEnabled: true, fd: p.read) { quit.signal() }
        console.start()
        defer { console.stop() }
        let typed = [UInt8](repeating: UInt8(ascii: "a"), count: 8000) + [ConsoleInput.escape, UInt8(ascii: "x")]
        #expect(typed.withUnsafeBytes { write(p.write, $0.baseAddress, $0.count) } == typed.count)
        #expect(quit.wait(timeout: .now() + 5) == .success, "Ctrl-A x behind a full FIFO was not seen")
    }

    @Test func escapeSequencesReachTheGuestAsDocumented() throws {
        let rig = try Rig(), p = try pipePair()
        defer { close(p.read); close(p.write) }
        let console = ConsoleInput(serial: rig.serial, loop: rig.loop, escapeEnabled: true, fd: p.read) {}
        console.start()
        defer { console.stop() }
        let typed: [UInt8] = [0x41, 0x01, 0x01, 0x42, 0x01, 0x43, 0x44]  // A ^A^A B ^A C D
        #expect(typed.withUnsafeBytes { write(p.write, $0.baseAddress, $0.count) } == typed.count)
        #expect(rig.guestReads(5) == [0x41, 0x01, 0x42, 0x43, 0x44])
    }

    @Test func aRegularFileIsReadAsTheGuestDrainsTheFIFO() throws {
        let rig = try Rig()
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-console-\(getpid()).txt")
        let data = (0..<5000).map { UInt8($0 % 97) }
        try Data(data).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let fd = open(url.path, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        let console = ConsoleInput(serial: rig.serial, loop: rig.loop, escapeEnabled: false, fd: fd) {}
        console.start()
        defer { console.stop() }
        #expect(rig.guestReads(data.count) == data)
        #expect(!console.isWatching)
    }

    @Test func nothingIsReadAfterStop() throws {
        let rig = try Rig(), p = try pipePair()
        defer { close(p.read); close(p.write) }
        let console = ConsoleInput(serial: rig.serial, loop: rig.loop, escapeEnabled: false, fd: p.read) {}
        console.start()
        #expect(write(p.write, "ab", 2) == 2)
        #expect(rig.guestReads(2) == Array("ab".utf8))
        console.stop()
        #expect(!console.isWatching)
        #expect(write(p.write, "cd", 2) == 2)
        usleep(200_000)
        #expect(unread(p.read) == 2)
        #expect(rig.serial.inputRoom == Serial8250.receiveCapacity)
    }
}
