import API
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A real `APIServer` on a socket in a fresh temporary directory, with a fake VM.
final class TestServer: Sendable {
    let directory: String
    let path: String
    let vm: VMControl
    let server: APIServer

    var fake: FakeVM { vm as! FakeVM }

    init(_ vm: VMControl = FakeVM(), options: APIServer.Options = APIServer.Options()) throws {
        directory = try makeTemporaryDirectory()
        path = directory + "/api.sock"
        self.vm = vm
        server = APIServer(path: path, control: vm, options: options)
        try server.start()
    }

    var client: APIClient { APIClient(path: path, timeout: 10) }

    deinit {
        server.stop()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A count several threads add to.
final class Counter: Sendable {
    private let n = Atomic<Int>(0)
    var count: Int { n.load(ordering: .relaxed) }
    func increment() { n.wrappingAdd(1, ordering: .relaxed) }
}

/// Short (unix socket paths are limited to 107 bytes) and unique.
func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/skiff-api-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
    return String(cString: made)
}

/// A hand-driven client connection, for sending what a well-behaved client would not.
final class RawConnection {
    private(set) var fd: Int32

    init(path: String, timeout: Int = 10) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            hangUp()  // deinit runs too: a class's init that throws after initializing everything
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
    }

    deinit { hangUp() }

    /// Closes once: a second close could hit a descriptor number the server (NIO) reused.
    func hangUp() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    /// Sends `text`; returns false once the server stopped reading (EPIPE/reset).
    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; return false }
            offset += n
        }
        return true
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Everything until the server closes (or the receive timeout); resets count as the end.
    func readToEnd() -> String {
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data += chunk[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Reads until one complete response (by Content-Length) has arrived.
    func readResponse() -> RawResponse? {
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if let response = RawResponse(String(decoding: data, as: UTF8.self)), response.isComplete { return response }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return RawResponse(String(decoding: data, as: UTF8.self)) }
            data += chunk[0..<n]
        }
    }

    /// Reads and discards until the server closes (true) or `seconds` pass (false).
    func waitForCloseDraining(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 && errno == ECONNRESET { return true }
        }
        return false
    }

    /// True if the server has closed its end (read gives EOF or reset) within the receive timeout.
    func waitForClose() -> Bool {
        var byte: UInt8 = 0
        while true {
            let n = recv(fd, &byte, 1, 0)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}

/// A response as text: enough for tests that look at what crossed the socket.
struct RawResponse {
    var status: Int
    var headers: [String: String]
    var body: String
    var isComplete: Bool

    init?(_ text: String) {
        guard let split = text.range(of: "\r\n\r\n") else { return nil }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let code = Int(statusParts[1]) else { return nil }
        status = code
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        self.headers = headers
        body = String(text[split.upperBound...])
        let length = Int(headers["content-length"] ?? "0") ?? 0
        isComplete = body.utf8.count >= length
    }

    /// The `error` field of a JSON error body.
    var error: String? {
        (try? JSONDecoder().decode([String: String].self, from: Data(body.utf8)))?["error"]
    }
}

/// Polls `condition` until it holds or `seconds` pass.
func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// Runs `body` against a fresh server, stopped (socket removed) afterwards.
func withServer(_ vm: VMControl = FakeVM(), options: APIServer.Options = APIServer.Options(),
                _ body: (TestServer) throws -> Void) throws {
    let server = try TestServer(vm, options: options)
    defer { withExtendedLifetime(server) { server.server.stop() } }
    try body(server)
}

/// One request over a fresh raw connection, answered in full.
func exchange(_ path: String, _ request: String) throws -> RawResponse? {
    let connection = try RawConnection(path: path)
    connection.send(request)
    return connection.readResponse()
}
