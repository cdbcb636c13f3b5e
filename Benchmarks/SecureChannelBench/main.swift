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
    if !ok { fputs("skiff-securechannel-bench: \(what) failed: \(String(cString: strerror(errno)))\n", stderr); exit(1) }
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

/// Runs `send` and `receive` on two threads; returns the seconds until both end.
func timed(send: @escaping @Sendable () throws -> Void, receive: @escaping @Sendable () throws -> Void) -> Double {
    let group = DispatchGroup()
    let start = DispatchTime.now()
    for body in [send, receive] {
        group.enter()
        Thread {
            do { try body() } catch { fputs("skiff-securechannel-bench: \(error)\n", stderr); exit(1) }
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
    final class Box: @unchecked Sendable { var result: Result<SecureChannel, Error>? }
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

func report(_ name: String, _ seconds: [Double]) {
    let rates = seconds.map { Double(mebibytes) / $0 }.sorted()
    let median = rates[rates.count / 2]
    print(String(format: "%@ %.0f MiB/s (median of %d runs of %d MiB; best %.0f, worst %.0f)",
                 name, median, rates.count, mebibytes, rates.last!, rates.first!))
}

let key = MigrationKey.generate()
report("plain TCP loopback:    ", (0..<runs).map { _ in plainRun() })
report("SecureChannel loopback:", try (0..<runs).map { _ in try encryptedRun(key: key) })
