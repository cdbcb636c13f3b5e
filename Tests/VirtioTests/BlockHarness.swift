import Foundation
import GuestMemory
import Storage
import Testing
@testable import Virtio

/// A virtio-blk device on a real raw image in a temp dir, driven through the MMIO
/// transport with an event loop on its own thread, as in a VM.
final class BlockHarness {
    static let ringBase: UInt64 = 0x10000
    static let headers: UInt64 = 0x80000
    static let data: UInt64 = 0x100000

    let directory: URL
    let imagePath: String
    let memory: GuestMemory
    let loop: RunningLoop
    let irq = FakeInterruptLine()
    let device: VirtioBlock
    let transport: VirtioMMIOTransport
    let driver: FakeDriver
    let guest: FakeGuestQueue
    private var slot: UInt64 = 0

    /// - Parameters:
    ///   - sparseSize: make the image a sparse file of this many bytes (no pattern).
    ///   - memorySize: guest RAM; a large one costs nothing until the device touches it.
    init(size: Int = 1 << 20, sparseSize: UInt64? = nil, readOnly: Bool = false, serial: String? = "skiff-disk-1",
         features: UInt64 = VirtioFeature.version1, synchronousIO: Bool = false, memorySize: UInt64 = 4 << 20,
         queueSize: UInt16 = 16, fileName: String = "disk.raw", imageFile: ((String) throws -> Void)? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-blk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        imagePath = directory.appendingPathComponent(fileName).path
        if let imageFile {
            try imageFile(directory.path)
        } else if let sparseSize {
            try RawImage.create(path: imagePath, size: sparseSize)
        } else {
            var pattern = [UInt8](repeating: 0, count: size)
            for i in 0..<size { pattern[i] = UInt8(truncatingIfNeeded: i / 512 + 1) } // each sector: its number+1
            try Data(pattern).write(to: URL(fileURLWithPath: imagePath))
        }
        memory = try makeGuestMemory(memorySize)
        loop = try RunningLoop()
        if synchronousIO {
            let image = try DiskImageOpener.open(path: imagePath, format: .raw, readOnly: readOnly)
            device = try VirtioBlock(image: image, serial: serial, synchronousIO: true)
        } else {
            device = try VirtioBlock(config: BlockDeviceConfig(path: imagePath, readOnly: readOnly, serial: serial))
        }
        transport = try VirtioMMIOTransport(device: device, memory: memory, interrupt: irq, eventLoop: loop.loop)
        driver = FakeDriver(transport: transport)
        guest = try FakeGuestQueue(memory: memory, size: queueSize, base: Self.ringBase)
        guard driver.negotiate(features) else { throw OptionError("FEATURES_OK refused") }
        driver.setUpQueue(0, guest)
        driver.driverOK()
        // DRIVER_OK has the loop look at the queue once (buffers posted before it).
        // Wait for that here, so it cannot take a test's first requests before the
        // test's own notification (the loop runs its queued work in order).
        let looked = DispatchSemaphore(value: 0)
        loop.loop.execute { looked.signal() }
        looked.wait()
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// Posts a request: header (type, sector), `out` bytes, `inLength` writable bytes, status.
    /// Returns its head.
    @discardableResult
    func post(type: UInt32, sector: UInt64, out: [UInt8] = [], inLength: UInt32 = 0, publish: Bool = true) throws -> (head: UInt16, status: UInt64, data: UInt64) {
        let header = Self.headers + slot * 0x100
        let data = Self.data + slot * 0x10000
        slot = (slot + 1) % 16
        try memory.store(type, to: GuestAddress(header))
        try memory.store(UInt32(0), to: GuestAddress(header + 4))
        try memory.store(sector, to: GuestAddress(header + 8))
        try memory.store(UInt8(0xff), to: GuestAddress(header + 16))
        var buffers: [(address: UInt64, length: UInt32, writable: Bool)] = [(header, 16, false)]
        if !out.isEmpty {
            try memory.write(out, to: GuestAddress(data))
            buffers.append((data, UInt32(out.count), false))
        }
        if inLength > 0 { buffers.append((data, inLength, true)) }
        buffers.append((header + 16, 1, true))
        let head = try guest.makeChain(buffers)
        if publish { try guest.publish(head) }
        return (head, header + 16, data)
    }

    /// Notifies the queue and waits for `count` more used entries.
    func kickAndWait(for count: UInt16 = 1) -> Bool {
        let target = guest.usedIdx &+ count
        driver.write32(0x50, 0)
        return waitUntil { self.guest.usedIdx == target }
    }

    /// One request, start to finish: (status byte, used length, data read).
    func run(type: UInt32, sector: UInt64, out: [UInt8] = [], inLength: UInt32 = 0) throws -> (status: UInt8, used: UInt32, data: [UInt8]) {
        let r = try post(type: type, sector: sector, out: out, inLength: inLength)
        guard kickAndWait() else { throw OptionError("request not completed; status \(driver.status) \(transport.lastError ?? "")") }
        let used = try guest.usedElement(guest.usedIdx &- 1)
        #expect(used.id == UInt32(r.head))
        return (try memory.load(UInt8.self, from: GuestAddress(r.status)), used.length,
                try memory.read(from: GuestAddress(r.data), count: Int(inLength)))
    }

    func fileBytes(at offset: Int, count: Int) throws -> [UInt8] {
        let f = try FileHandle(forReadingFrom: URL(fileURLWithPath: imagePath))
        defer { try? f.close() }
        try f.seek(toOffset: UInt64(offset))
        return Array(try f.read(upToCount: count) ?? Data())
    }
}

let T = (in: UInt32(0), out: UInt32(1), flush: UInt32(4), getID: UInt32(8), discard: UInt32(11), writeZeroes: UInt32(13))
let S = (ok: UInt8(0), ioerr: UInt8(1), unsupp: UInt8(2))
