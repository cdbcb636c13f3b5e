import FoundationEssentials
import NIOCore
import NIOEmbedded
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#endif

/// A blocking client of the API, for the `skiff ping|info|pause|…` subcommands.
/// The bytes move over a plain unix socket (no event-loop thread for a one-shot
/// CLI); NIOHTTP1's encoder and decoder, in an `EmbeddedChannel`, write the request
/// and parse the answer.
public struct APIClient: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: Data

        public func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
    }

    public let path: String
    /// Seconds to wait for a send or a receive to progress (a shutdown may take a while).
    public var timeout: Int
    /// Answers above this are refused: a hostile server must not exhaust our memory.
    public var maximumResponseSize = 4 << 20

    public init(path: String, timeout: Int = 60) {
        self.path = path
        self.timeout = timeout
    }

    // MARK: The endpoints

    public func ping() throws -> PingInfo { try decode(get("vmm.ping")) }
    public func info() throws -> VMInfo { try decode(get("vm.info")) }
    public func counters() throws -> [String: UInt64] { try decode(get("vm.counters")) }
    public func pause() throws { try put("vm.pause") }
    public func resume() throws { try put("vm.resume") }
    public func shutdown() throws { try put("vm.shutdown") }
    public func reboot() throws { try put("vm.reboot") }
    public func shutdownVMM() throws { try put("vmm.shutdown") }

    /// GET an endpoint; an error status throws `.server` with the server's message.
    public func get(_ endpoint: String) throws -> Data {
        let response = try send(method: .GET, target: APIRouter.prefix + endpoint)
        try Self.check(response)
        return response.body
    }

    /// PUT an endpoint, optionally with a JSON body; success is 204 (or any 2xx).
    public func put(_ endpoint: String, body: Data? = nil) throws {
        try Self.check(try send(method: .PUT, target: APIRouter.prefix + endpoint, body: body))
    }

    private static func check(_ response: Response) throws {
        guard (200..<300).contains(response.status) else {
            let message = (try? JSONDecoder().decode(ErrorBody.self, from: response.body))?.error
                ?? "the server answered \(response.status)"
            throw APIClientError.server(status: response.status, message: message)
        }
    }

    private func decode<T: Decodable>(_ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw APIClientError.transport("unexpected answer from \(path): \(error)")
        }
    }

    // MARK: One exchange

    /// Sends one request and returns the answer, whatever its status.
    public func send(method: HTTPMethod, target: String, body: Data? = nil, headers extra: [(String, String)] = [])
        throws -> Response {
        let socket = try connect()
        defer { close(socket) }
        let codec = EmbeddedChannel()
        defer { _ = try? codec.finish(acceptAlreadyClosed: true) }
        do {
            try codec.pipeline.syncOperations.addHTTPClientHandlers()
            var headers = HTTPHeaders([("Host", "localhost"), ("Accept", "application/json"), ("Connection", "close")])
            if let body {
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: String(body.count))
            }
            for (name, value) in extra { headers.add(name: name, value: value) }
            try codec.writeOutbound(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method,
                                                                                uri: target, headers: headers)))
            if let body { try codec.writeOutbound(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body)))) }
            try codec.writeOutbound(HTTPClientRequestPart.end(nil))
            var request = ByteBuffer()
            while var part = try codec.readOutbound(as: ByteBuffer.self) { request.writeBuffer(&part) }
            // A server that refuses early (413) may close before reading it all: still read its answer.
            _ = writeAll(socket, request)
            return try receive(socket, codec)
        } catch let e as APIClientError {
            throw e
        } catch {
            throw APIClientError.transport("unreadable answer from \(path): \(error)")
        }
    }

    private func receive(_ socket: Int32, _ codec: EmbeddedChannel) throws -> Response {
        var head: HTTPResponseHead?
        var body = Data()
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.recv(socket, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw APIClientError.transport("no answer from \(path) within \(timeout) s")
                }
                if errno == ECONNRESET, head == nil, total == 0 {
                    throw APIClientError.transport("the server at \(path) closed the connection without answering")
                }
            }
            if count > 0 {
                total += count
                guard total <= maximumResponseSize else {
                    throw APIClientError.transport("the answer from \(path) is larger than \(maximumResponseSize) bytes")
                }
                try codec.writeInbound(ByteBuffer(bytes: chunk[0..<count]))
            } else {
                // EOF: lets the decoder end a close-delimited body (or report a truncated one).
                codec.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
                try codec.throwIfErrorCaught()
            }
            while let part = try codec.readInbound(as: HTTPClientResponsePart.self) {
                switch part {
                case .head(let h): head = h
                case .body(let b): body.append(contentsOf: b.readableBytesView)
                case .end:
                    guard let head else { break }
                    return Response(status: Int(head.status.code), headers: head.headers.map { ($0.name, $0.value) },
                                    body: body)
                }
            }
            if count <= 0 {
                throw APIClientError.transport("the server at \(path) closed the connection without a complete answer")
            }
        }
    }

    private func connect() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw APIClientError.transport("cannot create a socket: \(String(cString: strerror(errno)))") }
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
            close(fd)
            throw APIClientError.transport("the API socket path is too long (at most 107 bytes): \(path)")
        }
        let result = UnixSocketListener.withAddress(path) { Glibc.connect(fd, $0, $1) }
        guard result == 0 else {
            let code = errno
            close(fd)
            switch code {
            case ENOENT, ENOTDIR: throw APIClientError.noServer(path: path)
            case ECONNREFUSED: throw APIClientError.refused(path: path)
            default: throw APIClientError.transport("cannot connect to \(path): \(String(cString: strerror(code)))")
            }
        }
        return fd
    }

    /// Writes all of `buffer`; false if the peer stopped reading (EPIPE, reset).
    private func writeAll(_ socket: Int32, _ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.send(socket, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
    }
}
