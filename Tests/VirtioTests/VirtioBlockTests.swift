import Events
import Foundation
import GuestMemory
import Storage
import Testing
@testable import Virtio

@Suite(.serialized) struct VirtioBlockTests {
    @Test func configSpaceAndFeatures() throws {
        let h = try BlockHarness()
        #expect(h.driver.read32(0x08) == 2)
        let f = h.driver.deviceFeatures
        #expect(f & VirtioBlock.Feature.flush != 0 && f & VirtioBlock.Feature.discard != 0)
        #expect(f & VirtioBlock.Feature.readOnly == 0)
        let capacity = h.driver.readConfig(0, count: 8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(UInt64(littleEndian: capacity) == 2048)
        #expect(h.driver.readConfig(12, count: 4) == [254, 0, 0, 0]) // seg_max
        #expect(h.driver.readConfig(20, count: 4) == [0, 2, 0, 0])   // blk_size 512
    }

    @Test(arguments: [(false, VirtioFeature.version1), (true, VirtioFeature.version1 | VirtioBlock.Feature.flush)])
    func readsAndWritesThroughTheEventLoop(synchronousIO: Bool, features: UInt64) throws {
        let h = try BlockHarness(features: features, synchronousIO: synchronousIO)
        let read = try h.run(type: T.in, sector: 3, inLength: 1024)
        #expect(read.status == S.ok)
        #expect(read.used == 1025)
        #expect(read.data == [UInt8](repeating: 4, count: 512) + [UInt8](repeating: 5, count: 512))
        #expect(h.irq.count >= 1)

        let pattern = (0..<1536).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let write = try h.run(type: T.out, sector: 10, out: pattern)
        #expect(write.status == S.ok)
        #expect(write.used == 1)
        #expect(try h.run(type: T.flush, sector: 0).status == S.ok)
        #expect(try h.fileBytes(at: 10 * 512, count: 1536) == pattern)
        #expect(try h.run(type: T.in, sector: 10, inLength: 1536).data == pattern)
    }

    @Test func getIDReturnsTheSerial() throws {
        let h = try BlockHarness(serial: "disk-0042")
        let r = try h.run(type: T.getID, sector: 0, inLength: 20)
        #expect(r.status == S.ok)
        #expect(r.data == Array("disk-0042".utf8) + [UInt8](repeating: 0, count: 11))
    }

    @Test func discardAndWriteZeroes() throws {
        let h = try BlockHarness()
        func segment(_ sector: UInt64, _ count: UInt32, _ flags: UInt32) -> [UInt8] {
            var b = [UInt8](); b.reserveCapacity(16)
            withUnsafeBytes(of: sector.littleEndian) { b += $0 }
            withUnsafeBytes(of: count.littleEndian) { b += $0 }
            withUnsafeBytes(of: flags.littleEndian) { b += $0 }
            return b
        }
        #expect(try h.run(type: T.discard, sector: 0, out: segment(8, 8, 0)).status == S.ok)
        #expect(try h.run(type: T.in, sector: 8, inLength: 4096).data == [UInt8](repeating: 0, count: 4096))
        #expect(try h.run(type: T.writeZeroes, sector: 0, out: segment(20, 2, 1) + segment(30, 1, 0)).status == S.ok)
        #expect(try h.fileBytes(at: 20 * 512, count: 1024) == [UInt8](repeating: 0, count: 1024))
        #expect(try h.fileBytes(at: 30 * 512, count: 512) == [UInt8](repeating: 0, count: 512))
        #expect(try h.fileBytes(at: 31 * 512, count: 1) == [32]) // untouched neighbour
        #expect(try h.run(type: T.discard, sector: 0, out: segment(8, 8, 1)).status == S.unsupp) // unmap on discard
        #expect(try h.run(type: T.writeZeroes, sector: 0, out: segment(2047, 2, 0)).status == S.ioerr) // past the end
        #expect(try h.run(type: T.discard, sector: 0, out: [1, 2, 3]).status == S.ioerr) // not whole segments
    }

    /// Issue #7: with `--disk path=X` (format probed), a guest write of a qcow2
    /// header to sector 0 must be refused on the async path too, or the next probed
    /// open follows the forged backing file name and hands the guest a host file.
    @Test func forgedQcow2HeaderOnAProbedRawDiskIsRefused() throws {
        let h = try BlockHarness()
        #expect(h.device.engine.isAsynchronous, "this test is about the asynchronous (I/O thread) path")
        #expect(h.device.image.format == .raw)
        let before = try h.fileBytes(at: 0, count: 512)
        var forged = [UInt8](repeating: 0, count: 512)
        forged.replaceSubrange(0 ..< 8, with: [0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]) // magic, version 3
        forged[15] = 0x80                                                         // backing_file_offset 0x80
        forged[19] = 11                                                           // backing_file_size
        forged.replaceSubrange(0x80 ..< 0x8b, with: Array("/etc/passwd".utf8))
        let r = try h.run(type: T.out, sector: 0, out: forged + [UInt8](repeating: 7, count: 512))
        #expect(r.status == S.ioerr)
        #expect(try h.fileBytes(at: 0, count: 512) == before)
        #expect(try DiskImageOpener.detectFormat(path: h.imagePath) == .raw)
        // Ordinary writes to sector 0, and a signature anywhere else, still work.
        #expect(try h.run(type: T.out, sector: 0, out: [UInt8](repeating: 0x5a, count: 512)).status == S.ok)
        #expect(try h.run(type: T.out, sector: 1, out: forged).status == S.ok)
        #expect(try h.fileBytes(at: 0, count: 1) == [0x5a])
        #expect(try DiskImageOpener.detectFormat(path: h.imagePath) == .raw)
    }

    @Test func outOfRangeSectorsAreIOErrors() throws {
        let h = try BlockHarness()
        #expect(try h.run(type: T.in, sector: 2048, inLength: 512).status == S.ioerr)
        #expect(try h.run(type: T.in, sector: 2047, inLength: 1024).status == S.ioerr)  // straddles the end
        #expect(try h.run(type: T.out, sector: UInt64.max / 256, out: [UInt8](repeating: 1, count: 512)).status == S.ioerr) // overflows
        #expect(try h.run(type: T.in, sector: 0, inLength: 100).status == S.ioerr)      // not whole sectors
        #expect(try h.run(type: T.in, sector: 2047, inLength: 512).status == S.ok)
    }

    @Test func readOnlyDisksRefuseWrites() throws {
        let h = try BlockHarness(readOnly: true)
        #expect(h.driver.deviceFeatures & VirtioBlock.Feature.readOnly != 0)
        #expect(h.driver.deviceFeatures & VirtioBlock.Feature.discard == 0)
        #expect(try h.run(type: T.out, sector: 0, out: [UInt8](repeating: 9, count: 512)).status == S.ioerr)
        #expect(try h.fileBytes(at: 0, count: 1) == [1])
        #expect(try h.run(type: T.in, sector: 0, inLength: 512).status == S.ok)
        #expect(try h.run(type: T.flush, sector: 0).status == S.ok)
    }

    @Test func unknownTypesAreUnsupported() throws {
        let h = try BlockHarness()
        #expect(try h.run(type: 99, sector: 0).status == S.unsupp)
    }

    @Test func manyRequestsInOneNotificationWithEventIdxAndIndirect() throws {
        let h = try BlockHarness(features: VirtioFeature.version1 | VirtioFeature.ringEventIdx | VirtioFeature.ringIndirectDesc)
        var statuses: [UInt64] = []
        for i in 0..<4 { statuses.append(try h.post(type: T.in, sector: UInt64(i), inLength: 512).status) }
        // One more as an indirect chain.
        try h.memory.store(T.in, to: GuestAddress(0x90000)); try h.memory.store(UInt64(7), to: GuestAddress(0x90008))
        let head = try h.guest.makeIndirectChain([(0x90000, 16, false), (0x300000, 512, true), (0x90010, 1, true)], table: 0x91000)
        try h.guest.publish(head)
        #expect(h.kickAndWait(for: 5))
        for s in statuses { #expect(try h.memory.load(UInt8.self, from: GuestAddress(s)) == S.ok) }
        #expect(try h.memory.load(UInt8.self, from: GuestAddress(0x90010)) == S.ok)
        #expect(try h.memory.read(from: GuestAddress(0x300000), count: 2) == [8, 8])
        #expect(h.guest.availEvent == h.guest.availIdx) // asked to be notified at the next request
    }

    /// Large requests go to the I/O threads (which complete them, or hand them to
    /// the loop when the device lock is busy), small ones are copied by the loop:
    /// both in one notification, with a flush after them and reads behind it.
    @Test func inlineAndIOThreadRequestsMixInOneNotification() throws {
        let h = try BlockHarness(queueSize: 64)
        let sizes = [65536, 4096, 65536, 512, 32768, 16384, 65536, 8192]
        var sector: UInt64 = 0
        var writes: [(sector: UInt64, bytes: [UInt8], status: UInt64)] = []
        for (i, n) in sizes.enumerated() {
            let bytes = (0 ..< n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i &* 13 &+ 1) }
            writes.append((sector, bytes, try h.post(type: T.out, sector: sector, out: bytes).status))
            sector += UInt64(n / 512)
        }
        let flush = try h.post(type: T.flush, sector: 0)
        let interrupts = h.irq.count
        #expect(h.kickAndWait(for: UInt16(sizes.count + 1)))
        for w in writes { #expect(try h.memory.load(UInt8.self, from: GuestAddress(w.status)) == S.ok) }
        #expect(try h.memory.load(UInt8.self, from: GuestAddress(flush.status)) == S.ok)
        #expect(waitUntil { h.irq.count > interrupts })
        for w in writes { #expect(try h.fileBytes(at: Int(w.sector * 512), count: w.bytes.count) == w.bytes) }
        // Read them back, again mixed, in one notification.
        var reads: [(head: UInt16, data: UInt64, status: UInt64, expected: [UInt8])] = []
        for w in writes {
            let r = try h.post(type: T.in, sector: w.sector, inLength: UInt32(w.bytes.count))
            reads.append((r.head, r.data, r.status, w.bytes))
        }
        let before = h.guest.usedIdx
        #expect(h.kickAndWait(for: UInt16(reads.count)))
        var lengths: [UInt32: UInt32] = [:]
        for i in 0 ..< UInt16(reads.count) {
            let e = try h.guest.usedElement(before &+ i)
            lengths[e.id] = e.length
        }
        for r in reads {
            #expect(try h.memory.load(UInt8.self, from: GuestAddress(r.status)) == S.ok)
            #expect(lengths[UInt32(r.head)] == UInt32(r.expected.count) + 1)
            #expect(try h.memory.read(from: GuestAddress(r.data), count: r.expected.count) == r.expected)
        }
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
    }

    /// Reads (or writes) that follow each other on the disk and arrive in one
    /// notification go as one transfer, each still answered with its own data and
    /// used length; a gap, the other direction or a flush starts a new run.
    @Test func adjacentRequestsInOneNotificationAreMerged() throws {
        let h = try BlockHarness(features: VirtioFeature.version1 | VirtioBlock.Feature.flush, queueSize: 64)
        // Three adjacent 4 KiB reads, one read elsewhere, two adjacent writes, a flush, one more adjacent write.
        var reads: [(head: UInt16, data: UInt64, status: UInt64, sector: UInt64)] = []
        for sector: UInt64 in [0, 8, 16, 100] {
            let r = try h.post(type: T.in, sector: sector, inLength: 4096)
            reads.append((r.head, r.data, r.status, sector))
        }
        let pattern = { (seed: Int) in (0 ..< 4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) } }
        var writes: [(status: UInt64, sector: UInt64, bytes: [UInt8])] = []
        for (i, sector): (Int, UInt64) in [(1, 200), (2, 208)] {
            writes.append((try h.post(type: T.out, sector: sector, out: pattern(i)).status, sector, pattern(i)))
        }
        let flush = try h.post(type: T.flush, sector: 0)
        writes.append((try h.post(type: T.out, sector: 216, out: pattern(3)).status, 216, pattern(3)))
        let before = h.guest.usedIdx
        #expect(h.kickAndWait(for: 8))
        // The first three reads and the two writes before the flush.
        #expect(h.device.mergedRequests == 5)
        var lengths: [UInt32: UInt32] = [:]
        for i in 0 ..< UInt16(8) {
            let e = try h.guest.usedElement(before &+ i)
            lengths[e.id] = e.length
        }
        for r in reads {
            #expect(try h.memory.load(UInt8.self, from: GuestAddress(r.status)) == S.ok)
            #expect(lengths[UInt32(r.head)] == 4097)
            // Each sector of the image holds its number + 1.
            let expected = (0 ..< 8).flatMap { [UInt8](repeating: UInt8(truncatingIfNeeded: r.sector + $0 + 1), count: 512) }
            #expect(try h.memory.read(from: GuestAddress(r.data), count: 4096) == expected)
        }
        #expect(try h.memory.load(UInt8.self, from: GuestAddress(flush.status)) == S.ok)
        for w in writes {
            #expect(try h.memory.load(UInt8.self, from: GuestAddress(w.status)) == S.ok)
            #expect(try h.fileBytes(at: Int(w.sector * 512), count: 4096) == w.bytes)
        }
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
    }

    @Test func badBuffersGetIOErrors() throws {
        let h = try BlockHarness()
        // Data buffer outside guest RAM, status byte fine.
        try h.memory.store(T.in, to: GuestAddress(0x90000)); try h.memory.store(UInt64(0), to: GuestAddress(0x90008))
        try h.guest.post([(0x90000, 16, false), (0x4000_0000, 512, true), (0x90010, 1, true)])
        #expect(h.kickAndWait())
        #expect(try h.memory.load(UInt8.self, from: GuestAddress(0x90010)) == S.ioerr)
        // Header shorter than 16 bytes.
        try h.guest.post([(0x90000, 8, false), (0x90020, 1, true)])
        #expect(h.kickAndWait())
        #expect(try h.memory.load(UInt8.self, from: GuestAddress(0x90020)) == S.ioerr)
        // Data direction wrong (IN with a device-readable data buffer).
        try h.guest.post([(0x90000, 16, false), (0x100000, 512, false), (0x90030, 1, true)])
        #expect(h.kickAndWait())
        #expect(try h.memory.load(UInt8.self, from: GuestAddress(0x90030)) == S.ioerr)
        #expect(try h.guest.usedElement(h.guest.usedIdx &- 1).length == 1) // nothing written but the status
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
    }

    @Test func unanswerableChainsMarkTheDeviceForReset() throws {
        let h = try BlockHarness()
        // No writable status byte at all.
        try h.guest.post([(0x90000, 16, false)])
        h.driver.write32(0x50, 0)
        #expect(waitUntil { h.driver.status & VirtioStatus.deviceNeedsReset != 0 })
        #expect(h.driver.read32(0x60) & 2 != 0) // configuration change interrupt
        #expect(h.guest.usedIdx == 0)
        // Reset brings it back.
        #expect(h.driver.negotiate(VirtioFeature.version1))
        let guest = try FakeGuestQueue(memory: h.memory, size: 16, base: 0x40000)
        h.driver.setUpQueue(0, guest)
        h.driver.driverOK()
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
    }

    @Test func loopingChainMarksTheDeviceForReset() throws {
        let h = try BlockHarness()
        try h.guest.writeDescriptor(0, address: 0x90000, length: 16, flags: DescriptorChain.flagNext, next: 1)
        try h.guest.writeDescriptor(1, address: 0x90010, length: 1, flags: DescriptorChain.flagNext | DescriptorChain.flagWrite, next: 0)
        try h.guest.publish(0)
        h.driver.write32(0x50, 0)
        #expect(waitUntil { h.driver.status & VirtioStatus.deviceNeedsReset != 0 })
        #expect(h.transport.lastError?.contains("longer than 16") == true)
        // Further notifications are ignored until reset.
        try h.post(type: T.in, sector: 0, inLength: 512)
        h.driver.write32(0x50, 0)
        usleep(20_000)
        #expect(h.guest.usedIdx == 0)
    }

    @Test func stateSurvivesASnapshotIntoANewTransport() throws {
        let h = try BlockHarness(features: VirtioFeature.version1 | VirtioFeature.ringEventIdx)
        #expect(try h.run(type: T.in, sector: 1, inLength: 512).status == S.ok)
        let saved = try JSONDecoder().decode(VirtioTransportState.self, from: JSONEncoder().encode(h.transport.saveState()))
        #expect(saved.queues[0].nextUsed == 1)

        // A second transport over the same memory continues where the first stopped.
        // (Same device object: the image is locked against a second writer.)
        h.driver.write32(0x70, 0) // the old one lets go of the device and the rings
        let transport = try VirtioMMIOTransport(device: h.device, memory: h.memory, interrupt: h.irq, eventLoop: h.loop.loop)
        try transport.restoreState(saved)
        #expect(FakeDriver(transport: transport).status & VirtioStatus.driverOK != 0)
        let r = try h.post(type: T.in, sector: 2, inLength: 512)
        FakeDriver(transport: transport).write32(0x50, 0)
        #expect(waitUntil { h.guest.usedIdx == 2 })
        #expect(try h.memory.load(UInt8.self, from: GuestAddress(r.status)) == S.ok)

        var bad = saved
        bad.queues[0].descriptorTable = 1 << 40
        #expect(throws: VirtqueueError.self) { try transport.restoreState(bad) }
        bad = saved
        bad.driverFeatures |= 1 << 50
        #expect(throws: VirtioStateError.self) { try transport.restoreState(bad) }
    }

    @Test func randomChainsAreAnsweredOrRefused() throws {
        let h = try BlockHarness(features: VirtioFeature.version1 | VirtioFeature.ringIndirectDesc | VirtioFeature.ringEventIdx)
        var rng = SplitMix64(state: 7)
        var guest = h.guest
        var resets = 0
        for round in 0..<60 {
            // A header that is sometimes plausible, and descriptors that mostly are not.
            let types: [UInt32] = [T.in, T.out, T.flush, T.getID, T.discard, T.writeZeroes, UInt32(truncatingIfNeeded: rng.next())]
            try h.memory.store(types[Int(rng.next() % 7)], to: GuestAddress(0x90000))
            try h.memory.store(rng.next() % 3 == 0 ? rng.next() : rng.next() % 2100, to: GuestAddress(0x90008))
            for i: UInt16 in 0..<16 {
                let address: UInt64 = [0x90000, 0x100000 + (rng.next() % 64) * 512, rng.next(), (4 << 20) - 8][Int(rng.next() % 4)]
                let length = [UInt32(16), 1, 512, UInt32(rng.next() % 70_000), 0][Int(rng.next() % 5)]
                try guest.writeDescriptor(i, address: address, length: length, flags: UInt16(rng.next() % 8), next: UInt16(rng.next() % 18))
            }
            let before = guest.usedIdx
            let count = UInt16(1 + rng.next() % 3)
            for _ in 0..<count { try guest.publish(UInt16(rng.next() % 17)) }
            h.driver.write32(0x50, 0)
            let settled = waitUntil(timeout: 5) {
                guest.usedIdx &- before == count || h.driver.status & VirtioStatus.deviceNeedsReset != 0
            }
            #expect(settled, "round \(round)")
            if h.driver.status & VirtioStatus.deviceNeedsReset != 0 {
                resets += 1
                #expect(h.driver.negotiate(VirtioFeature.version1 | VirtioFeature.ringIndirectDesc))
                guest = try FakeGuestQueue(memory: h.memory, size: 16, base: 0x40000 + UInt64(resets % 2) * 0x10000)
                h.driver.setUpQueue(0, guest)
                h.driver.driverOK()
            }
        }
        // Still a working disk afterwards.
        #expect(h.driver.status & VirtioStatus.deviceNeedsReset == 0)
        try h.memory.store(T.in, to: GuestAddress(0x90000)); try h.memory.store(UInt64(0), to: GuestAddress(0x90008))
        try h.memory.store(UInt8(0xee), to: GuestAddress(0x90010))
        let head = try guest.makeChain([(0x90000, 16, false), (0x300000, 512, true), (0x90010, 1, true)])
        try guest.publish(head)
        let target = guest.usedIdx &+ 1
        h.driver.write32(0x50, 0)
        #expect(waitUntil { guest.usedIdx == target })
        #expect(try h.memory.load(UInt8.self, from: GuestAddress(0x90010)) == S.ok)
    }

    @Test func availIndexJumpMarksTheDeviceForReset() throws {
        let h = try BlockHarness()
        try h.guest.setAvailIdx(40)
        h.driver.write32(0x50, 0)
        #expect(waitUntil { h.driver.status & VirtioStatus.deviceNeedsReset != 0 })
    }
}

private let qemuImg = ["/usr/bin/qemu-img", "/usr/local/bin/qemu-img"].first { FileManager.default.isExecutableFile(atPath: $0) }

@discardableResult
private func qemuImgRun(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: qemuImg!)
    p.arguments = arguments
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite struct VirtioBlockQcow2Tests {
    @Test(.enabled(if: qemuImg != nil, "needs qemu-img to make the qcow2 image and check it"))
    func qcow2OverlayWithBackingFile() throws {
        let base = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 / 512 + 1) }
        let h = try BlockHarness(fileName: "overlay.qcow2") { dir in
            try Data(base).write(to: URL(fileURLWithPath: dir + "/base.raw"))
            let r = try qemuImgRun(["create", "-q", "-f", "qcow2", "-b", dir + "/base.raw", "-F", "raw", dir + "/overlay.qcow2"])
            guard r.status == 0 else { throw OptionError(r.output) }
        }
        #expect(h.device.image.format == .qcow2)
        // Reads fall through to the backing file; writes land in the overlay.
        #expect(try h.run(type: T.in, sector: 5, inLength: 512).data == [UInt8](repeating: 6, count: 512))
        let pattern = (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        #expect(try h.run(type: T.out, sector: 100, out: pattern).status == S.ok)
        #expect(try h.run(type: T.in, sector: 100, inLength: 8192).data == pattern)
        #expect(try h.run(type: T.flush, sector: 0).status == S.ok)

        // The host agrees: the image is consistent and holds what the guest wrote.
        var expected = base
        expected.replaceSubrange(100 * 512 ..< 100 * 512 + 8192, with: pattern)
        let dir = h.directory.path
        try Data(expected).write(to: URL(fileURLWithPath: dir + "/expected.raw"))
        let check = try qemuImgRun(["check", "-U", dir + "/overlay.qcow2"])
        #expect(check.status == 0, "\(check.output)")
        let compare = try qemuImgRun(["compare", "-U", "-f", "qcow2", "-F", "raw", dir + "/overlay.qcow2", dir + "/expected.raw"])
        #expect(compare.status == 0, "\(compare.output)")
        let base2 = try Data(contentsOf: URL(fileURLWithPath: dir + "/base.raw"))
        #expect(Array(base2) == base) // the backing file is untouched
    }
}

@Suite struct BlockDeviceConfigTests {
    @Test func parsesTheCLISyntax() throws {
        #expect(try BlockDeviceConfig(parsing: "path=/var/disk.img") == BlockDeviceConfig(path: "/var/disk.img"))
        #expect(try BlockDeviceConfig(parsing: "path=a.qcow2,readonly=on,serial=SN1,format=qcow2")
                == BlockDeviceConfig(path: "a.qcow2", readOnly: true, serial: "SN1", format: .qcow2))
        #expect(try BlockDeviceConfig(parsing: "format=raw,path=x,readonly=off") == BlockDeviceConfig(path: "x", format: .raw))
    }

    @Test(arguments: [
        ("readonly=on", "missing path=FILE"),
        ("path=", "path is empty"),
        ("path=x,readonly=maybe", "readonly=maybe: expected on or off"),
        ("path=x,format=vmdk", "format=vmdk: expected raw or qcow2"),
        ("path=x,serial=123456789012345678901", "serial '123456789012345678901' is longer than 20 bytes"),
        ("path=x,cache=none", "unknown key 'cache' (known: path, readonly, serial, format)"),
        ("path=x,path=y", "'path' given twice"),
        ("disk.img", "'disk.img' is not key=value (expected path=FILE[,readonly=on][,serial=ID][,format=raw|qcow2])"),
    ])
    func rejectsBadOptions(text: String, message: String) {
        #expect(throws: OptionError(message)) { try BlockDeviceConfig(parsing: text) }
    }

    @Test func missingImageIsAClearError() {
        #expect { try VirtioBlock(config: BlockDeviceConfig(path: "/nonexistent/skiff.img")) } throws: { error in
            "\(error)".contains("/nonexistent/skiff.img")
        }
    }
}
