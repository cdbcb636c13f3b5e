import API
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `APIClient`, the logic behind `skiff ping|info|pause|…`, against the real server.
struct ClientTests {
    @Test func everyCommandWorksAgainstTheServer() throws {
        try withServer { s in
            #expect(try s.client.ping().version == "0.0.0-test")
            #expect(try s.client.info().config.cpus.bootVCPUs == 2)
            try s.client.pause()
            #expect(s.fake.state == "Paused")
            try s.client.resume()
            #expect(s.fake.state == "Running")
            try s.client.reboot()
            try s.client.shutdown()
            #expect(s.fake.state == "Shutdown")
            try s.client.shutdownVMM()
            #expect(s.fake.calls == ["pause", "resume", "reboot", "shutdown", "shutdownVMM"])
        }
    }

    @Test func refusedTransitionsCarryTheServersMessage() throws {
        try withServer { s in
            #expect(throws: APIClientError.server(status: 409, message: "the VM is not paused (Running)")) {
                try s.client.resume()
            }
            try s.client.shutdown()
            #expect(throws: APIClientError.server(status: 409, message: "the VM is not running (Shutdown)")) {
                try s.client.pause()
            }
            #expect(throws: APIClientError.server(status: 409, message: "the VM is shut down")) { try s.client.reboot() }
            #expect(throws: APIClientError.server(status: 404, message: "no such endpoint: /api/v1/vm.bogus")) {
                try s.client.put("vm.bogus")
            }
        }
    }

    @Test func noSocketAtThePath() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/none.sock"
        let error = #expect(throws: APIClientError.self) { try APIClient(path: path).ping() }
        #expect(error == .noServer(path: path))
        #expect(error?.description == "no skiff API at \(path)")
        #expect(throws: APIClientError.noServer(path: "/nonexistent-dir/x.sock")) {
            try APIClient(path: "/nonexistent-dir/x.sock").info()
        }
    }

    @Test func vmGoneIsConnectionRefused() throws {
        let s = try TestServer()
        let path = s.path
        // What a crashed skiff leaves: the socket file without a listener.
        let keep = path + ".keep"
        #expect(link(path, keep) == 0)
        s.server.stop()
        #expect(rename(keep, path) == 0)
        let error = #expect(throws: APIClientError.self) { try APIClient(path: path).pause() }
        #expect(error == .refused(path: path))
        #expect(error?.description == "the VM at \(path) is gone (connection refused)")
    }

    @Test func serverThatNeverAnswersTimesOut() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/mute.sock"
        // Listens, never accepts or answers.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8)); raw[path.utf8.count] = 0
        }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        listen(fd, 4)
        let error = #expect(throws: APIClientError.self) { try APIClient(path: path, timeout: 1).info() }
        #expect(error == .transport("no answer from \(path) within 1 s"))
    }
}
