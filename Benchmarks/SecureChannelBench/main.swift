import Crypto
import Foundation
import Posix
import SecureChannel

// Throughput of the migration stream over loopback TCP, in the clear and
// through SecureChannel (Noise, ChaChaPoly), in MiB/s of payload.
// Run the release build:
//   swift build -c release --product skiff-securechannel-bench
//   .build/release/skiff-securechannel-bench [MiB per run, default 2048] [runs, default 3]

let args = CommandLine.arguments
let mebibytes = args.count > 1 ? Int(args[1]) ?? 2048 : 2048
let runs = args.count > 2 ? Int(args[2]) ?? 3 : 3
let chunk = 1 << 20  // the size of one migration write, e.g. 256 pages

func check(_ ok: Bool, _ what: String) {
    if !ok { StandardError.write("skiff-securechannel-bench: \(what) failed: \(String(cString: strerror(errno)))\n"); exit(1) }
}

/// A connected pair of TCP sockets on 127.0.0.1.
func loopbackPair() -> (Int32, Int32) {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    check(listener >= 0, "socket")
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    check(withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } } == 0, "bind")
    check(listen(listener, 1) == 0, "listen")
    check(withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } } == 0, "getsockname")
    let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    check(withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) } } == 0, "connect")
    let server = accept(listener, nil, nil)
    check(server >= 0, "accept")
    close(listener)
    return (client, server)
}

/// CPU seconds used by the whole process so far (both ends, user and kernel).
func processCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// CPU seconds of the calling thread so far.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// CPU seconds of each kind of run, summed over its runs: the whole process,
/// the sending thread, the receiving thread. Unlike MiB/s, these hardly
/// depend on what else the machine is doing.
// Sound because: each field is added to by one thread (`sender`, `receiver`: its own; `process`: the main one) and read after the run.
final class CPUTally: @unchecked Sendable {
    var process = 0.0, sender = 0.0, receiver = 0.0
}
nonisolated(unsafe) var cpu = CPUTally()  // Sound because: only the main thread reads or replaces it.

/// Runs `send` and `receive` on two threads; returns the seconds until both end.
func timed(send: @escaping @Sendable () throws -> Void, receive: @escaping @Sendable () throws -> Void) -> Double {
    let group = DispatchGroup()
    let cpuStart = processCPUSeconds()
    defer { cpu.process += processCPUSeconds() - cpuStart }
    let start = DispatchTime.now()
    let tally = cpu
    for (index, body) in [send, receive].enumerated() {
        group.enter()
        Thread {
            let threadStart = threadCPUSeconds()
            do { try body() } catch { StandardError.write("skiff-securechannel-bench: \(error)\n"); exit(1) }
            let used = threadCPUSeconds() - threadStart
            if index == 0 { tally.sender += used } else { tally.receiver += used }
            group.leave()
        }.start()
    }
    group.wait()
    return Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

let total = mebibytes << 20
let payload = [UInt8](repeating: 0xA5, count: chunk)

func plainRun() -> Double {
    let (a, b) = loopbackPair()
    defer { close(a); close(b) }
    return timed(send: {
        try payload.withUnsafeBytes { p in
            for _ in 0..<total / chunk {
                var sent = 0
                while sent < chunk {
                    let n = send(a, p.baseAddress! + sent, chunk - sent, 0)
                    if n < 0 { throw SystemCallError("send", errno: errno) }
                    sent += n
                }
            }
        }
    }, receive: {
        var buffer = [UInt8](repeating: 0, count: chunk)
        var received = 0
        while received < total {
            let n = buffer.withUnsafeMutableBytes { recv(b, $0.baseAddress!, chunk, 0) }
            if n <= 0 { throw SystemCallError("recv", errno: errno) }
            received += n
        }
    })
}

func encryptedRun(key: MigrationKey) throws -> Double {
    let (a, b) = loopbackPair()
    final class Box: @unchecked Sendable { var result: Result<SecureChannel, Error>? }  // Sound because: written before `done.signal()`, read after `done.wait()`.
    let box = Box(), done = DispatchSemaphore(value: 0)
    Thread {
        box.result = Result { try SecureChannel.responder(socket: b, key: key) }
        done.signal()
    }.start()
    let initiator = try SecureChannel.initiator(socket: a, key: key)
    done.wait()
    let receiver = try box.result!.get()
    defer { initiator.close(); receiver.close() }
    return timed(send: {
        try payload.withUnsafeBytes { p in
            for _ in 0..<total / chunk { try initiator.write(p) }
        }
        try initiator.flush()
    }, receive: {
        var buffer = [UInt8](repeating: 0, count: chunk)
        try buffer.withUnsafeMutableBytes { p in
            for _ in 0..<total / chunk { try receiver.read(into: p) }
        }
    })
}

func report(_ name: String, _ seconds: [Double], cpu: CPUTally? = nil) {
    let rates = seconds.map { Double(mebibytes) / $0 }.sorted()
    let median = rates[rates.count / 2]
    print(String(format: "%@ %.0f MiB/s (median of %d runs of %d MiB; best %.0f, worst %.0f)",
                 name, median, rates.count, mebibytes, rates.last!, rates.first!))
    if let cpu {
        let gib = Double(runs) * Double(mebibytes) / 1024
        print(String(format: "    CPU-s per GiB: %.2f process, %.2f sender thread, %.2f receiver thread",
                     cpu.process / gib, cpu.sender / gib, cpu.receiver / gib))
    }
}

let key = MigrationKey.generate()
let plainSeconds = (0..<runs).map { _ in plainRun() }
report("plain TCP loopback:    ", plainSeconds, cpu: cpu)
cpu = CPUTally()
let encryptedSeconds = try (0..<runs).map { _ in try encryptedRun(key: key) }
report("SecureChannel loopback:", encryptedSeconds, cpu: cpu)

// The ceiling on one core: swift-crypto's ChaChaPoly on Noise-sized messages,
// with no sockets (seal, then open, of the same amount of data).

func cryptoOnly() throws -> (seal: Double, open: Double) {
    let key = SymmetricKey(size: .bits256)
    let message = [UInt8](repeating: 0x5A, count: 65519)
    let count = total / message.count
    var start = DispatchTime.now()
    var box: ChaChaPoly.SealedBox?
    for _ in 0..<count { box = try ChaChaPoly.seal(message, using: key, nonce: ChaChaPoly.Nonce()) }
    let seal = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    start = DispatchTime.now()
    for _ in 0..<count { _ = try ChaChaPoly.open(box!, using: key) }
    let open = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    return (seal, open)
}

let crypto = try (0..<runs).map { _ in try cryptoOnly() }
report("ChaChaPoly seal, 1 core:", crypto.map(\.seal))
report("ChaChaPoly open, 1 core:", crypto.map(\.open))
