import API
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Untrusted clients: whatever they send, the server answers or hangs up, the VM is
/// not touched, and the next client is served as usual.
struct HostileClientTests {
    /// After each abuse the server must still answer, and the VM must not have seen a call.
    private func stillHealthy(_ s: TestServer) throws {
        #expect(try s.client.info().state == "Running")
        #expect(s.fake.calls.isEmpty)
    }

    @Test func malformedRequestsAre400() throws {
        let garbage = [
            "HELLO\r\n\r\n",
            "GET /api/v1/vm.info HTTP/9.9\r\n\r\n",
            "GET /api/v1/vm.info HTTP/1.1\r\nNo-Colon-Here\r\n\r\n",
            "GET /api/v1/vm.info HTTP/1.1\r\nContent-Length: banana\r\n\r\n",
            "PUT /api/v1/vm.pause HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
            "PUT /api/v1/vm.pause HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n",
            "GET /api/v1/vm.info\0 HTTP/1.1\r\n\r\n",
            "\u{1}\u{2}\u{3}\u{4}\r\n\r\n",
        ]
        try withServer { s in
            for request in garbage {
                let connection = try RawConnection(path: s.path)
                connection.send(request)
                let text = connection.readToEnd()
                let response = RawResponse(text)
                #expect(response?.status == 400, "\(request.debugDescription) → \(text)")
                #expect(response?.error?.hasPrefix("malformed HTTP request") == true)
                #expect(response?.headers["connection"] == "close")
            }
            try stillHealthy(s)
        }
    }

    @Test func bodyTooLargeByContentLengthIs413BeforeReading() throws {
        try withServer { s in
            let connection = try RawConnection(path: s.path)
            // Only the head is sent: the answer must come without the body ever arriving.
            connection.send("PUT /api/v1/vm.snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
            let response = try #require(connection.readResponse())
            #expect(response.status == 413)
            #expect(response.error == "request body larger than 65536 bytes")
            #expect(connection.waitForClose())
            try stillHealthy(s)
        }
    }

    @Test func bodyTooLargeWhileStreamingIs413() throws {
        try withServer { s in
            // A real 1 MiB upload by Content-Length, and a chunked one with no length up front.
            let connection = try RawConnection(path: s.path)
            let big = String(repeating: "a", count: 1 << 20)
            connection.send("PUT /api/v1/vm.snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: \(big.utf8.count)\r\n\r\n" + big)
            #expect(connection.readResponse()?.status == 413)

            let chunked = try RawConnection(path: s.path)
            chunked.send("PUT /api/v1/vm.snapshot HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            let piece = String(repeating: "b", count: 8192)
            var sent = 0
            // Keep sending until the server refuses; it must do so soon after 64 KiB.
            while sent < 4 << 20, chunked.send(String(piece.utf8.count, radix: 16) + "\r\n" + piece + "\r\n") {
                sent += piece.utf8.count
                if sent > 128 * 1024 { break }
            }
            let response = chunked.readResponse()
            #expect(response?.status == 413)
            #expect(response?.error == "request body larger than 65536 bytes")
            try stillHealthy(s)
        }
    }

    @Test func bodyJustUnderTheLimitIsRead() throws {
        try withServer { s in
            let padding = String(repeating: " ", count: 65536 - 40)
            let body = #"{"destination_url": "file:///x"}"# + padding
            #expect(body.utf8.count <= 65536)
            #expect(throws: APIClientError.server(status: 501, message: "not implemented yet")) {
                try s.client.put("vm.snapshot", body: Data(body.utf8))
            }
        }
    }

    @Test func hugeHeadersAre431() throws {
        try withServer { s in
            let connection = try RawConnection(path: s.path)
            let value = String(repeating: "h", count: 64 * 1024)
            connection.send("GET /api/v1/vm.info HTTP/1.1\r\nHost: x\r\nX-Big: \(value)\r\n\r\n")
            let response = connection.readResponse()
            #expect(response?.status == 431)
            #expect(response?.error == "request headers are too large")

            let many = try RawConnection(path: s.path)
            let headers = (0..<500).map { "X-H\($0): v\r\n" }.joined()
            many.send("GET /api/v1/vm.info HTTP/1.1\r\n\(headers)\r\n")
            #expect([400, 431].contains(many.readResponse()?.status ?? 0))

            let longTarget = try RawConnection(path: s.path)
            longTarget.send("GET /api/v1/\(String(repeating: "p", count: 100_000)) HTTP/1.1\r\n\r\n")
            #expect([400, 431].contains(longTarget.readResponse()?.status ?? 0))
            try stillHealthy(s)
        }
    }

    @Test func halfClosedClientStillGetsItsAnswer() throws {
        try withServer { s in
            let connection = try RawConnection(path: s.path)
            connection.send("GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n\r\n")
            connection.shutdownWrite()
            let text = connection.readToEnd()  // also proves the server closes afterwards
            #expect(text.hasPrefix("HTTP/1.1 200"))
            #expect(text.contains("\"version\":\"0.0.0-test\""))

            // Half-closed in the middle of a request: dropped, nothing reaches the VM.
            let partial = try RawConnection(path: s.path)
            partial.send("PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\nContent-Le")
            partial.shutdownWrite()
            _ = partial.readToEnd()
            #expect(eventually { s.server.openConnections == 0 })
            try stillHealthy(s)
        }
    }

    @Test func clientThatHangsUpDuringASlowChangeDoesNotDisturbTheServer() throws {
        let vm = FakeVM()
        vm.pauseDelay = 0.3
        try withServer(vm) { s in
            do {
                let connection = try RawConnection(path: s.path)
                connection.send("PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(eventually { vm.calls == ["pause"] })
            }  // closed here, before the answer
            #expect(eventually { vm.state == "Paused" })
            try s.client.resume()
            #expect(try s.client.info().state == "Running")
        }
    }

    @Test func idleConnectionsAreClosed() throws {
        var options = APIServer.Options()
        options.idleTimeout = .milliseconds(300)
        try withServer(options: options) { s in
            let silent = try RawConnection(path: s.path)
            let started = Date()
            #expect(silent.waitForClose())
            #expect(Date().timeIntervalSince(started) < 5)
            // A request that stalls half-way is cut off too.
            let stalled = try RawConnection(path: s.path)
            stalled.send("GET /api/v1/vm.info HTTP/1.1\r\nHo")
            #expect(stalled.waitForClose())
            try stillHealthy(s)
        }
    }

    @Test func idleTimeoutDoesNotCutAnAnswerInProgress() throws {
        var options = APIServer.Options()
        options.idleTimeout = .milliseconds(200)
        let vm = FakeVM()
        vm.pauseDelay = 1.0
        try withServer(vm, options: options) { s in
            try s.client.pause()  // waits 1 s: five idle periods
            #expect(vm.state == "Paused")
        }
    }

    @Test func connectionsAboveTheCapAreRefusedWith503() throws {
        var options = APIServer.Options()
        options.maximumConnections = 8
        try withServer(options: options) { s in
            let held = try (0..<8).map { _ in try RawConnection(path: s.path) }
            #expect(eventually { s.server.openConnections == 8 })
            let extra = try RawConnection(path: s.path)
            let text = extra.readToEnd()
            #expect(text.hasPrefix("HTTP/1.1 503"), "\(text)")
            #expect(RawResponse(text)?.error == "too many API connections (at most 8)")
            #expect(s.server.openConnections == 8)
            // Once one leaves, a new client is served.
            held.first?.hangUp()
            #expect(eventually { s.server.openConnections == 7 })
            try stillHealthy(s)
            withExtendedLifetime(held) {}
        }
    }

    @Test func manyConcurrentClientsAreAllAnswered() throws {
        try withServer { s in
            // 32 clients at once (under the cap of 64), 10 requests each.
            let answered = Counter()
            let group = DispatchGroup()
            for i in 0..<32 {
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    for j in 0..<10 {
                        let ok = (try? ((i + j) % 2 == 0 ? s.client.info().state == "Running"
                                                          : s.client.ping().pid == Int64(getpid()))) ?? false
                        if ok { answered.increment() }
                    }
                }
            }
            #expect(group.wait(timeout: .now() + 60) == .success)
            #expect(answered.count == 320)
            try stillHealthy(s)
        }
    }

    @Test func clientThatSendsButNeverReadsIsThrottledThenDropped() throws {
        var options = APIServer.Options()
        options.idleTimeout = .milliseconds(1500)
        try withServer(options: options) { s in
            let hog = try RawConnection(path: s.path, timeout: 1)  // a send blocked 1 s ends the flood
            let request = Array("GET /api/v1/vm.info HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            let batch = Array([[UInt8]](repeating: request, count: 100).joined())
            var sent = 0
            while sent < 32 << 20, hog.send(batch) { sent += batch.count }
            // Let the server do all it will do, then compare: answers it made vs requests sent.
            var answered = s.fake.infoCalls
            for _ in 0..<60 {
                usleep(500_000)
                if s.fake.infoCalls == answered { break }
                answered = s.fake.infoCalls
            }
            let requests = sent / request.count
            // With back-pressure the server stops reading once its answers fill the socket, so
            // most requests stay unread; without it, it reads them all and queues every answer.
            #expect(answered * 2 < requests, "answered \(answered) of \(requests) requests nobody reads")
            #expect(sent < 8 << 20)
            let before = s.fake.infoCalls
            #expect(try s.client.info().state == "Running")  // others are still served
            #expect(s.fake.infoCalls == before + 1)
            #expect(hog.waitForCloseDraining(seconds: 30))
        }
    }

    @Test func infoAnswersWhileASlowPauseIsInProgress() throws {
        let vm = FakeVM()
        vm.pauseDelay = 2.0
        try withServer(vm) { s in
            let pauser = try RawConnection(path: s.path)
            pauser.send("PUT /api/v1/vm.pause HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(eventually { vm.calls == ["pause"] })
            let started = Date()
            for _ in 0..<5 {
                #expect(try s.client.info().state == "Running")  // the pause has not completed yet
                #expect(try s.client.ping().version == "0.0.0-test")
            }
            let elapsed = Date().timeIntervalSince(started)
            #expect(elapsed < 1.0, "info/ping waited behind the pause: \(elapsed) s")
            #expect(pauser.readResponse()?.status == 204)
            #expect(try s.client.info().state == "Paused")
        }
    }
}
