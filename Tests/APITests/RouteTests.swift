import API
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every route answers with Cloud Hypervisor's status codes and JSON errors, over a
/// real unix socket.
struct RouteTests {
    @Test func pingAndInfoAnswerJSON() throws {
        try withServer { s in
            let ping = try s.client.ping()
            #expect(ping == s.vm.ping())
            let info = try s.client.info()
            #expect(info.state == "Running")
            #expect(info.config == FakeVM.config)
            #expect(info.counters["uptime_ms"] == 1234)
            #expect(try s.client.counters()["uptime_ms"] == 1234)
        }
    }

    @Test func infoUsesCloudHypervisorKeys() throws {
        try withServer { s in
            let response = try #require(try exchange(s.path, "GET /api/v1/vm.info HTTP/1.1\r\nHost: x\r\n\r\n"))
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "application/json")
            for key in ["\"state\":\"Running\"", "\"boot_vcpus\":2", "\"size\":268435456", "\"readonly\":true",
                        "\"format\":\"qcow2\"", "\"serial\":\"root\"", "\"tap\":\"tap0\"", "\"mac\":\"52:54:00:12:34:56\"",
                        "\"cmdline\":", "\"initrd\":", "\"kernel\":", "\"counters\":"] {
                #expect(response.body.contains(key), "missing \(key) in \(response.body)")
            }
            let ping = try #require(try exchange(s.path, "GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n"))
            #expect(ping.body.contains("\"build_version\":\"test-build\""))
            #expect(ping.body.contains("\"pid\":\(getpid())"))
        }
    }

    @Test func stateChangesAnswer204AndReachTheVM() throws {
        try withServer { s in
            for (endpoint, expected) in [("vm.pause", "Paused"), ("vm.resume", "Running"), ("vm.reboot", "Running"),
                                         ("vm.shutdown", "Shutdown")] {
                let response = try #require(try exchange(s.path, "PUT /api/v1/\(endpoint) HTTP/1.1\r\nHost: x\r\n\r\n"))
                #expect(response.status == 204, "\(endpoint)")
                #expect(response.body.isEmpty)
                #expect(s.fake.state == expected, "\(endpoint)")
            }
            let vmm = try #require(try exchange(s.path, "PUT /api/v1/vmm.shutdown HTTP/1.1\r\nHost: x\r\n\r\n"))
            #expect(vmm.status == 204)
            #expect(s.fake.calls == ["pause", "resume", "reboot", "shutdown", "shutdownVMM"])
        }
    }

    @Test func wrongStateIs409WithTheVMsMessage() throws {
        try withServer { s in
            try s.client.pause()
            let response = try #require(try exchange(s.path, "PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\n\r\n"))
            #expect(response.status == 409)
            #expect(response.error == "the VM is already paused")
            #expect(throws: APIClientError.server(status: 409, message: "the VM is already paused")) { try s.client.pause() }
            try s.client.resume()
            #expect(throws: APIClientError.server(status: 409, message: "the VM is not paused (Running)")) {
                try s.client.resume()
            }
        }
    }

    @Test func controlErrorKindsMapToStatuses() throws {
        struct Odd: Error {}
        let cases: [(Error, Int, String)] = [
            (ControlError(.badRequest, "bad"), 400, "bad"),
            (ControlError(.notFound, "gone"), 404, "gone"),
            (ControlError(.conflict, "busy"), 409, "busy"),
            (ControlError(.internal, "broke"), 500, "broke"),
            (ControlError(.notImplemented, "later"), 501, "later"),
            (Odd(), 500, "internal error: Odd()"),
        ]
        for (error, status, message) in cases {
            let vm = FakeVM()
            vm.rebootFailure = error
            try withServer(vm) { s in
                let response = try #require(try exchange(s.path, "PUT /api/v1/vm.reboot HTTP/1.1\r\nHost: x\r\n\r\n"))
                #expect(response.status == status)
                #expect(response.error == message)
            }
        }
    }

    @Test func unknownPathsAre404() throws {
        try withServer { s in
            for target in ["/", "/api/v1/", "/api/v1/vm.nope", "/api/v2/vm.info", "/api/v1/vm.info/extra",
                           "/api/v1/VM.INFO", "/api/v1/../v1/vm.info", "*"] {
                let response = try #require(try exchange(s.path, "GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n"), "\(target)")
                #expect(response.status == 404, "\(target)")
                #expect(response.error?.hasPrefix("no such endpoint") == true, "\(target)")
            }
            #expect(s.fake.calls.isEmpty)
        }
    }

    @Test func queryStringsAreIgnored() throws {
        try withServer { s in
            let response = try #require(try exchange(s.path, "GET /api/v1/vm.info?pretty=1 HTTP/1.1\r\nHost: x\r\n\r\n"))
            #expect(response.status == 200)
        }
    }

    @Test func wrongMethodIs405WithAllow() throws {
        try withServer { s in
            let cases = [("PUT", "vm.info", "GET"), ("POST", "vmm.ping", "GET"), ("GET", "vm.pause", "PUT"),
                         ("DELETE", "vm.shutdown", "PUT"), ("GET", "vm.snapshot", "PUT"), ("HEAD", "vm.resume", "PUT")]
            for (method, endpoint, allowed) in cases {
                let connection = try RawConnection(path: s.path)
                connection.send("\(method) /api/v1/\(endpoint) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                let text = connection.readToEnd()
                #expect(text.hasPrefix("HTTP/1.1 405"), "\(method) \(endpoint): \(text)")
                #expect(text.lowercased().contains("allow: \(allowed.lowercased())"), "\(method) \(endpoint)")
            }
            #expect(s.fake.calls.isEmpty)
        }
    }

    @Test func notYetImplementedRoutesValidateThenAnswer501() throws {
        try withServer { s in
            let bodies = [("vm.snapshot", #"{"destination_url": "file:///var/snap"}"#),
                          ("vm.restore", #"{"source_url": "file:///var/snap", "prefault": true}"#),
                          ("vm.send-migration", #"{"destination_url": "tcp:192.0.2.1:6000", "insecure_migration": true}"#),
                          ("vm.receive-migration", #"{"receiver_url": "unix:/run/mig.sock", "insecure_migration": true}"#)]
            for (endpoint, body) in bodies {
                #expect(throws: APIClientError.server(status: 501, message: "not implemented yet")) {
                    try s.client.put(endpoint, body: Data(body.utf8))
                }
            }
        }
    }

    @Test func implementingTheVMControlMethodIsEnoughToServeARoute() throws {
        let vm = SnapshottingVM()
        try withServer(vm) { s in
            try s.client.put("vm.snapshot", body: Data(#"{"destination_url": "file:///tmp/snap"}"#.utf8))
            #expect(vm.destinations == ["file:///tmp/snap"])
        }
    }

    @Test func badBodiesAre400WithAClearMessage() throws {
        let cases: [(String, String?, String)] = [
            ("vm.snapshot", nil, "this request needs a JSON body"),
            ("vm.snapshot", "{", "the body is not valid JSON"),
            ("vm.snapshot", "[1,2]", "the body has the wrong type"),
            ("vm.snapshot", "{}", "missing field 'destination_url'"),
            ("vm.snapshot", #"{"destination_url": 7}"#, "'destination_url' has the wrong type"),
            ("vm.snapshot", #"{"destination_url": ""}"#, "destination_url is empty"),
            ("vm.snapshot", #"{"destination_url": "tcp:1.2.3.4:5"}"#, "destination_url must be 'file:///…'"),
            ("vm.snapshot", #"{"destination_url": "file:///a\u0000b"}"#, "destination_url contains control characters"),
            ("vm.snapshot", "{\"destination_url\": \"file:///\(String(repeating: "a", count: 5000))\"}",
             "destination_url is longer than 4096 bytes"),
            ("vm.restore", #"{"source_url": "file:///x", "prefault": "yes"}"#, "'prefault' has the wrong type"),
            ("vm.send-migration", #"{"destination_url": "file:///x"}"#, "destination_url must be 'tcp:…' or 'unix:…'"),
            ("vm.send-migration", #"{"destination_url": "tcp:h:1"}"#, "a migration key is needed: migration_key (made by `skiff migration-key FILE`), or insecure_migration: true for plain TCP"),
            ("vm.send-migration", #"{"destination_url": "tcp:h:1", "migration_key": "/k", "insecure_migration": true}"#,
             "give migration_key or insecure_migration, not both"),
            ("vm.send-migration", #"{"destination_url": "tcp:h:1", "migration_key": "k"}"#, "migration_key must be an absolute path"),
            ("vm.send-migration", #"{"destination_url": "tcp:h:1", "insecure_migration": true, "downtime_limit_ms": 0}"#,
             "downtime_limit_ms must be between 1 and 60000"),
            ("vm.receive-migration", #"{"receiver_url": "tcp:"}"#, "receiver_url must be 'tcp:…' or 'unix:…'"),
            ("vm.receive-migration", "\u{FF}\u{FE}", "the body is not valid JSON"),
        ]
        try withServer { s in
            for (endpoint, body, message) in cases {
                #expect(throws: APIClientError.server(status: 400, message: message), "\(endpoint) \(body ?? "nil")") {
                    try s.client.put(endpoint, body: body.map { Data($0.utf8) })
                }
            }
            #expect(s.fake.calls.isEmpty)
        }
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() throws {
        try withServer { s in
            let connection = try RawConnection(path: s.path)
            for _ in 0..<3 {
                connection.send("GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n")
                let response = try #require(connection.readResponse())
                #expect(response.status == 200)
            }
            // Pipelined: both answered, in order.
            connection.send("PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/vm.info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let text = connection.readToEnd()
            #expect(text.hasPrefix("HTTP/1.1 204"))
            #expect(text.contains("\"state\":\"Paused\""))
        }
    }

    @Test func expect100ContinueIsAnsweredBeforeTheBody() throws {
        try withServer { s in
            let connection = try RawConnection(path: s.path, timeout: 5)
            let body = #"{"destination_url": "file:///snap"}"#
            connection.send("PUT /api/v1/vm.snapshot HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n")
            var interim = [UInt8](repeating: 0, count: 25)
            #expect(recv(connection.fd, &interim, interim.count, Int32(MSG_WAITALL)) == 25)
            #expect(String(decoding: interim, as: UTF8.self) == "HTTP/1.1 100 Continue\r\n\r\n")
            connection.send(body)
            let response = RawResponse(connection.readToEnd())
            #expect(response?.status == 501)
        }
    }
}
