import API
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The socket file: owner-only, never stolen from a live server, stale ones replaced,
/// removed on stop.
struct SocketLifecycleTests {
    @Test func socketIsOwnerOnly() throws {
        try withServer { s in
            var info = stat()
            #expect(lstat(s.path, &info) == 0)
            #expect(info.st_mode & S_IFMT == S_IFSOCK)
            #expect(info.st_mode & 0o777 == 0o600)
        }
    }

    @Test func refusesAPathServedByAnotherServer() throws {
        try withServer { s in
            let second = APIServer(path: s.path, control: FakeVM())
            #expect(throws: APIServerError("another skiff serves \(s.path)")) { try second.start() }
            let version = try s.client.ping().version  // the first one is untouched and still answers
            #expect(version == "0.0.0-test")
        }
    }

    @Test func replacesAStaleSocket() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/api.sock"
        // A socket bound and never listened on is what a killed skiff leaves: connect is refused.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8)); raw[path.utf8.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        close(stale)
        #expect(throws: APIClientError.refused(path: path)) { try APIClient(path: path).ping() }

        let server = APIServer(path: path, control: FakeVM())
        try server.start()
        defer { server.stop() }
        #expect(try APIClient(path: path).ping().version == "0.0.0-test")
    }

    @Test func refusesAPathThatIsNotASocket() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/precious.txt"
        try "keep me".write(toFile: path, atomically: false, encoding: .utf8)
        let server = APIServer(path: path, control: FakeVM())
        #expect(throws: APIServerError("\(path) exists and is not a socket; refusing to replace it")) { try server.start() }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
        server.stop()
        #expect(FileManager.default.fileExists(atPath: path))
    }

    @Test func refusesBadPaths() throws {
        let long = "/tmp/" + String(repeating: "x", count: 120)
        #expect(throws: APIServerError.self) { try APIServer(path: long, control: FakeVM()).start() }
        #expect(throws: APIServerError.self) { try APIServer(path: "", control: FakeVM()).start() }
        #expect(throws: APIServerError.self) { try APIServer(path: "/nonexistent-dir/api.sock", control: FakeVM()).start() }
    }

    @Test func stopRemovesTheSocketAndIsIdempotent() throws {
        let s = try TestServer()
        #expect(FileManager.default.fileExists(atPath: s.path))
        s.server.stop()
        #expect(!FileManager.default.fileExists(atPath: s.path))
        s.server.stop()
        #expect(throws: APIClientError.noServer(path: s.path)) { try s.client.ping() }
        #expect(throws: APIServerError.self) { try s.server.start() }  // one life per server
    }

    @Test func stopLeavesAReplacedPathAlone() throws {
        let s = try TestServer()
        // Someone else took the path over (e.g. a second skiff after ours was declared stale).
        unlink(s.path)
        try "other".write(toFile: s.path, atomically: false, encoding: .utf8)
        s.server.stop()
        #expect(try String(contentsOfFile: s.path, encoding: .utf8) == "other")
    }

    @Test func stopClosesOpenConnections() throws {
        let s = try TestServer()
        let idle = try RawConnection(path: s.path, timeout: 5)
        #expect(eventually { s.server.openConnections == 1 })
        s.server.stop()
        #expect(idle.waitForClose())
    }

    @Test func stopWaitsForTheAnswerToAShutdownInFlight() throws {
        let vm = FakeVM()
        vm.pauseDelay = 0.5
        let s = try TestServer(vm)
        let connection = try RawConnection(path: s.path)
        connection.send("PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(eventually { vm.calls == ["pause"] })
        s.server.stop()  // while pause() still sleeps
        let response = connection.readResponse()
        #expect(response?.status == 204)
    }
}
