import Foundation
import Storage

// qcow2 as the VMM uses it: the fuzzed bytes are an image file, opened writable
// through `DiskImageOpener` (header, extensions, backing chain names, L1, refcount
// table), then read, written, discarded, zeroed, checked and closed. Next to it lie
// a raw and a qcow2 backing file the seeds name ("base.raw", "base.qcow2").
// Input: [op flags][image bytes].
private let directory: String = {
    let path = "/dev/shm/skiff-fuzz-qcow2-\(getpid())"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: "/dev/shm/skiff-fuzz-qcow2-\(getpid())") }
    do {
        // A 64 KiB raw base and a qcow2 base of the same size (512-byte clusters).
        var raw = [UInt8](repeating: 0, count: 64 << 10)
        for i in raw.indices { raw[i] = UInt8(truncatingIfNeeded: i / 512 + 1) }
        try Data(raw).write(to: URL(fileURLWithPath: path + "/base.raw"))
        var options = Qcow2Image.CreateOptions()
        options.clusterSize = 512
        try? FileManager.default.removeItem(atPath: path + "/base.qcow2")
        try Qcow2Image.create(path: path + "/base.qcow2", virtualSize: 64 << 10, options: options)
        let base = try Qcow2Image(path: path + "/base.qcow2")
        try raw.withUnsafeBytes { try base.write(UnsafeRawBufferPointer(rebasing: $0[0..<4096]), at: 8192) }
        try base.close()
    } catch {
        fatalError("cannot create the backing files: \(error)")
    }
    return path
}()
private let imagePath = directory + "/image.qcow2"
private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 4096)

/// Replaces the image file's contents in place: plain syscalls on tmpfs, not
/// Foundation's atomic write (temporary file, rename), which cost more than many
/// of the inputs' whole qcow2 work. Truncating drops what the last input's writes
/// appended. The same file every time, so first check that the last input's image
/// left no lock behind (QEMU-style OFD locks on bytes 100–299 live as long as an
/// open of the file): a leaked open would make every later writable open fail.
private func writeImage(_ bytes: UnsafePointer<UInt8>, _ count: Int) {
    let fd = open(imagePath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { fatalError("cannot open \(imagePath): errno \(errno)") }
    var lock = flock()
    lock.l_type = Int16(F_WRLCK)
    lock.l_whence = Int16(SEEK_SET)
    lock.l_start = 100
    lock.l_len = 200
    let F_OFD_GETLK: Int32 = 36
    guard fcntl(fd, F_OFD_GETLK, &lock) == 0 else { fatalError("fcntl(F_OFD_GETLK): errno \(errno)") }
    if lock.l_type != Int16(F_UNLCK) { fatalError("the previous input's image is still open (its lock is held)") }
    var done = 0
    while done < count {
        let n = write(fd, bytes + done, count - done)
        guard n > 0 else { fatalError("cannot write \(imagePath): errno \(errno)") }
        done += n
    }
    close(fd)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQcow2(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let ops = data[0]
    writeImage(data + 1, size - 1)
    let readOnly = ops & 1 != 0
    guard let image = try? DiskImageOpener.open(path: imagePath, format: .qcow2, readOnly: readOnly) else { return 0 }
    let end = image.virtualSize
    // A few places the fuzzer can steer: start, middle, end, and an offset from the flags.
    let spots: [UInt64] = [0, end / 2, end &- 4096, UInt64(ops >> 4) << 12, end &- 1, end]
    for at in spots {
        let length = min(4096, end &- min(at, end))
        _ = try? image.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(length)]), at: at)
        if !readOnly {
            if ops & 2 != 0 { _ = try? image.write(UnsafeRawBufferPointer(rebasing: buffer[0..<Int(length)]), at: at) }
            if ops & 4 != 0 { _ = try? image.discard(at: at, length: length) }
            if ops & 8 != 0 { _ = try? image.writeZeroes(at: at, length: length &* 2) }
        }
        _ = try? image.dataExtents(at: at, length: length, forWrite: !readOnly)
    }
    if let qcow2 = image as? Qcow2Image { _ = try? qcow2.check() }
    _ = try? image.flush()
    _ = try? image.close()
    return 0
}

// libFuzzer's own main is not linked (SwiftPM points `main` at this file's top-level code).
@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(_ argc: UnsafeMutablePointer<CInt>,
                       _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                       _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
var argc = CommandLine.argc, argv = CommandLine.unsafeArgv
exit(runDriver(&argc, &argv, { fuzzQcow2($0, $1) }))
