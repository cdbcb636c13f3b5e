import Foundation
import Testing

/// `skiff run --api-socket` driven the way a user drives it: the `skiff`
/// client subcommands and plain HTTP over the socket (curl), against real
/// firmware guests.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"),
       .enabled(if: Shell.has("curl"), "needs curl"),
       .serialized)
struct APILifecycleTests {
    struct HTTPAnswer { var status: Int; var body: String }

    /// One request over the socket with curl; status and body.
    static func http(_ socket: String, _ method: String, _ endpoint: String, body: String? = nil) throws -> HTTPAnswer {
        var arguments = ["-s", "--max-time", "30", "--unix-socket", socket, "-X", method,
                         "-w", "\n%{http_code}", "http://localhost/api/v1/\(endpoint)"]
        if let body { arguments += ["-H", "Content-Type: application/json", "-d", body] }
        let run = try SkiffProcess.runTool(URL(fileURLWithPath: "/usr/bin/curl"), arguments, timeout: 40)
        let text = run.stdout
        guard let cut = text.lastIndex(of: "\n"), let status = Int(text[text.index(after: cut)...]) else {
            return HTTPAnswer(status: 0, body: text + run.stderr)
        }
        return HTTPAnswer(status: status, body: String(text[..<cut]))
    }

    static func state(_ socket: String) throws -> String? {
        let answer = try http(socket, "GET", "vm.info")
        guard answer.status == 200,
              let json = try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any] else { return nil }
        return json["state"] as? String
    }

    static func waitForSocket(_ path: String, vm: BackgroundVM) -> Bool {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && vm.process.isRunning {
            if (try? http(path, "GET", "vmm.ping"))?.status == 200 { return true }
            usleep(20_000)
        }
        return false
    }

    static func checkSequence(_ counts: [UInt64], every: UInt64) -> Bool {
        !counts.isEmpty && counts == (1...counts.count).map { UInt64($0) * every }
    }

    /// 200 pause/resume rounds, alternating the CLI client and plain HTTP: the
    /// count goes on with no gap and no repeat, nothing moves while paused
    /// (checked for 2 s several times), vm.info says Paused/Running, refused
    /// transitions are 409s, and the VM still shuts down normally.
    @Test(arguments: [1, 2])
    func pauseAndResume200Times(cpus: Int) throws {
        let dir = try Shell.temporaryDirectory("api-count")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let every: UInt64 = 2_000_000
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("count"), "--memory", "64M",
                                   "--cpus", "\(cpus)", "--cmdline", "count.every=\(every)", "--api-socket", socket])
        try #require(Self.waitForSocket(socket, vm: vm), "no API on \(socket): \(vm.errors.text)")
        #expect(vm.waitForCounts(2, timeout: 60))
        for round in 0..<200 {
            if round % 2 == 0 {
                let pause = try SkiffProcess.run(["pause", "--api-socket", socket], timeout: 30)
                #expect(pause.status == 0, "skiff pause: \(pause.stderr)")
            } else {
                #expect(try Self.http(socket, "PUT", "vm.pause").status == 204)
            }
            if round % 40 == 0 {
                #expect(try Self.state(socket) == "Paused")
                #expect(try Self.http(socket, "PUT", "vm.pause").status == 409)
                let before = vm.counts.count
                usleep(2_000_000)
                #expect(vm.counts.count == before, "a count line appeared while paused")
            }
            if round % 2 == 0 {
                let resume = try SkiffProcess.run(["resume", "--api-socket", socket], timeout: 30)
                #expect(resume.status == 0, "skiff resume: \(resume.stderr)")
            } else {
                #expect(try Self.http(socket, "PUT", "vm.resume").status == 204)
            }
            if round % 40 == 0 { #expect(try Self.state(socket) == "Running") }
        }
        let refused = try SkiffProcess.run(["resume", "--api-socket", socket], timeout: 30)
        #expect(refused.status != 0 && refused.stderr.hasPrefix("skiff: error:"), "\(refused.status) \(refused.stderr)")
        let seen = vm.counts.count
        #expect(vm.waitForCounts(seen + 2, timeout: 60), "count did not go on after the last resume")
        let shutdown = try SkiffProcess.run(["shutdown", "--api-socket", socket], timeout: 30)
        #expect(shutdown.status == 0, "skiff shutdown: \(shutdown.stderr)")
        #expect(vm.waitForExit(timeout: 30) == 0, "stderr: \(vm.errors.text)")
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket was left behind")
        #expect(Self.checkSequence(vm.counts, every: every), "gap or repeat: \(vm.counts.prefix(40))")
    }

    /// The `blk` guest's whole test (patterned writes, FLUSH, 16 pipelined
    /// requests in flight, discard, write-zeroes) on a qcow2 overlay while the
    /// VM is paused and resumed as fast as the API allows: every check passes
    /// (nothing lost or done twice) and the image is clean.
    @Test func diskIOAcrossPauses() throws {
        let dir = try Shell.temporaryDirectory("api-blk")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let (overlay, reference) = try TeardownTests.makeOverlay(in: dir)
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("blk"), "--memory", "64M", "--api-socket", socket,
                                   "--disk", "path=\(overlay),format=qcow2", "--disk", "path=\(reference),format=raw"])
        try #require(Self.waitForSocket(socket, vm: vm), "no API on \(socket): \(vm.errors.text)")
        // One kept-alive connection: a round takes about a millisecond, so many
        // happen during the guest's half second of I/O even on a quiet host.
        var rounds = 0
        if let fd = UnixClient.connect(socket) {
            defer { close(fd) }
            while vm.process.isRunning && rounds < 5000 {
                guard UnixClient.request(fd, "PUT", "vm.pause") == 204 else { break }
                guard UnixClient.request(fd, "PUT", "vm.resume") == 204 else { break }
                rounds += 1
            }
        }
        print("diskIOAcrossPauses: \(rounds) pause/resume rounds during the guest's I/O")
        #expect(vm.waitForExit(timeout: 120) == 0, "stderr: \(vm.errors.text)")
        #expect(rounds >= 5, "only \(rounds) pause/resume rounds happened during the guest's I/O")
        #expect(vm.output.text.contains("blk: PASS all 22 checks on 2 device(s)"), "\(vm.output.text)")
        _ = try Shell.run("qemu-img check -q \(overlay)")
        #expect(try TeardownTests.differences(overlay: overlay, reference: reference, in: dir) == 0)
    }

    /// Garbage, an oversized body, a client that never sends, half-closed and
    /// many concurrent connections, while `count` runs: the guest does not
    /// notice (no gap), and the API still answers and still pauses.
    @Test func hostileClientsDoNotDisturbTheGuest() throws {
        let dir = try Shell.temporaryDirectory("api-hostile")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let every: UInt64 = 2_000_000
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("count"), "--memory", "64M",
                                   "--cmdline", "count.every=\(every)", "--api-socket", socket])
        try #require(Self.waitForSocket(socket, vm: vm), "no API on \(socket): \(vm.errors.text)")
        #expect(vm.waitForCounts(2, timeout: 60))

        var idle: [Int32] = []
        for _ in 0..<8 { if let fd = UnixClient.connect(socket) { idle.append(fd) } }  // connect, never send
        for i in 0..<100 {
            guard let fd = UnixClient.connect(socket) else { continue }
            switch i % 4 {
            case 0: UnixClient.send(fd, (0..<512).map { _ in UInt8.random(in: 0...255) })
            case 1: UnixClient.send(fd, Array("PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n".utf8)
                                        + [UInt8](repeating: 0x41, count: 65536))
            case 2: UnixClient.send(fd, Array("GET /api/v1/vm.info HTTP/1.1\r\nHost: x\r\n".utf8)); shutdown(fd, Int32(SHUT_WR))
            default: UnixClient.send(fd, Array("GET /api/v1/\(String(repeating: "x", count: 100_000)) HTTP/1.1\r\n\r\n".utf8))
            }
            close(fd)
        }
        #expect(try Self.http(socket, "GET", "vm.info").status == 200)
        #expect(try Self.http(socket, "PUT", "vm.pause").status == 204)
        #expect(try Self.http(socket, "PUT", "vm.resume").status == 204)
        let seen = vm.counts.count
        #expect(vm.waitForCounts(seen + 2, timeout: 60))
        for fd in idle { close(fd) }
        #expect(try Self.http(socket, "PUT", "vm.shutdown").status == 204)
        #expect(vm.waitForExit(timeout: 30) == 0, "stderr: \(vm.errors.text)")
        #expect(Self.checkSequence(vm.counts, every: every), "gap or repeat: \(vm.counts.prefix(40))")
    }

    /// A second skiff on a live socket is refused; a stale one is taken over.
    @Test func aLiveSocketIsRefused() throws {
        let dir = try Shell.temporaryDirectory("api-live")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("count"), "--memory", "64M", "--api-socket", socket])
        try #require(Self.waitForSocket(socket, vm: vm))
        let second = try SkiffProcess.run(["run", "--kernel", try Firmware.path("hello"), "--memory", "64M",
                                           "--api-socket", socket], timeout: 30)
        #expect(second.status != 0 && second.stderr.contains("skiff: error:"), "\(second.status): \(second.stderr)")
        var st = stat()
        #expect(stat(socket, &st) == 0 && st.st_mode & 0o777 == 0o600, "mode \(String(st.st_mode & 0o777, radix: 8))")
        kill(vm.process.processIdentifier, SIGTERM)
        #expect(vm.waitForExit(timeout: 30) == 128 + SIGTERM)
        #expect(!FileManager.default.fileExists(atPath: socket), "SIGTERM left the socket behind")
    }
}

/// Raw connections to a unix socket, for clients that misbehave on purpose.
enum UnixClient {
    static func connect(_ path: String) -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = b }
        }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
        if !ok { close(fd); return nil }
        return fd
    }

    /// One request on a kept-alive connection (blocking); the answer's status,
    /// or nil when the connection ended. Only for bodiless answers (204) and
    /// short JSON ones read whole by one `read`.
    static func request(_ fd: Int32, _ method: String, _ endpoint: String) -> Int? {
        let text = "\(method) /api/v1/\(endpoint) HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
        let sent = text.utf8CString.withUnsafeBufferPointer { Glibc.send(fd, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL)) }
        guard sent == text.utf8.count else { return nil }
        var answer = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !answer.isEmpty ? !String(decoding: answer, as: UTF8.self).contains("\r\n\r\n") : true {
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { return nil }
            answer += buffer[0..<n]
        }
        let head = String(decoding: answer, as: UTF8.self)
        let parts = head.split(separator: " ", maxSplits: 2)
        return parts.count >= 2 ? Int(parts[1]) : nil
    }

    /// Writes what the server takes; a server that closed early is fine.
    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        var flags = fcntl(fd, F_GETFL)
        flags |= O_NONBLOCK
        _ = fcntl(fd, F_SETFL, flags)
        bytes.withUnsafeBytes { _ = Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}
