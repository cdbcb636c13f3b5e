import Foundation

/// A source `skiff run` (count firmware, API socket) and a destination
/// `skiff run --incoming` on loopback, for migration tests.
// Sound because: all `let`; the two `BackgroundVM`s (Process, Pipe) are only started, read and stopped, which Foundation allows from any thread.
final class MigrationPair: @unchecked Sendable {
    let dir: URL
    let socket: String
    /// The destination's API socket (it serves one once the VM has arrived).
    let destinationSocket: String
    let port: UInt16
    let source: BackgroundVM
    let destination: BackgroundVM
    let every: UInt64
    /// `--insecure-migration` or `--migration-key FILE`, as each end was given it.
    let sourceSecurity: [String]
    let destinationSecurity: [String]

    /// - Parameters: security, destinationSecurity: the ends' stream protection
    ///   (default plain TCP; the destination takes the source's unless told).
    init(name: String, cpus: Int = 1, memory: String = "128M", every: UInt64 = 2_000_000, extra: String = "",
         destinationPort: UInt16? = nil, security: [String] = ["--insecure-migration"],
         destinationSecurity: [String]? = nil) throws {
        dir = try Shell.temporaryDirectory(name)
        socket = dir.appendingPathComponent("src.sock").path
        destinationSocket = dir.appendingPathComponent("dst.sock").path
        self.every = every
        let chosen = destinationPort ?? Self.freePort()
        port = chosen
        sourceSecurity = security
        self.destinationSecurity = destinationSecurity ?? security
        destination = try BackgroundVM(["run", "--incoming", "tcp:127.0.0.1:\(chosen)"] + self.destinationSecurity
                                       + ["--log-level", "info", "--api-socket", destinationSocket])
        source = try BackgroundVM(["run", "--kernel", try Firmware.path("count"), "--memory", memory, "--cpus", String(cpus),
                                   "--cmdline", "count.every=\(every) \(extra)", "--api-socket", socket])
    }

    deinit { try? FileManager.default.removeItem(at: dir) }

    /// Both up: the destination listening, the source's API answering and `n` lines counted.
    func waitUntilReady(counts n: Int = 3) -> Bool {
        destination.errors.waitFor("waiting for an incoming VM", timeout: 60)
            && APILifecycleTests.waitForSocket(socket, vm: source)
            && source.waitForCounts(n, timeout: 60)
    }

    /// `skiff migrate` to `port` (default: the destination's).
    func migrate(to target: UInt16? = nil, host: String = "127.0.0.1", timeout: Double = 180) throws -> SkiffRun {
        try SkiffProcess.run(["migrate", "--api-socket", socket] + sourceSecurity
                             + ["tcp:\(host):\(target ?? port)"], timeout: timeout)
    }

    /// A port nobody listens on now (bound, read, released).
    static func freePort() -> UInt16 {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return UInt16(bigEndian: address.sin_port)
    }

    /// The `count N` values of whole lines in `text`.
    static func counts(_ text: String) -> [UInt64] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        return lines.compactMap { $0.hasPrefix("count ") ? UInt64($0.dropFirst(6)) : nil }
    }

    /// True when `counts` is every, 2·every, 3·every, … with nothing missing or repeated.
    func unbroken(_ counts: [UInt64]) -> Bool {
        counts == (1...max(1, counts.count)).map { UInt64($0) * every }
    }
}
