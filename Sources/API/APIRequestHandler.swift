import Dispatch
import FoundationEssentials
import NIOCore
import NIOHTTP1

/// Answers the HTTP requests of one connection. NIOHTTP1 parses; this handler
/// bounds the body, routes, and answers — reads on the event loop, state changes on
/// the control queue — and closes the connection whenever the client misbehaves.
final class APIRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    struct Settings {
        var router: APIRouter
        var control: VMControl
        /// Serial: the VM sees one state change at a time, in arrival order.
        var controlQueue: DispatchQueue
        var registry: ConnectionRegistry
        var maximumBodySize: Int
    }

    private enum State {
        /// Between requests.
        case idle
        /// Head (and maybe part of the body) read; waiting for `.end`.
        case receiving(head: HTTPRequestHead, match: APIRouter.Match, body: ByteBuffer?)
        /// The answer is being computed or written.
        case answering
        /// Answered early (413, bad HTTP): the rest is ignored and the connection closes.
        case finished
    }

    private let settings: Settings
    private var state = State.idle
    private var keepAlive = true
    private var inputClosed = false

    init(_ settings: Settings) {
        self.settings = settings
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .idle = state else { return }
            keepAlive = head.isKeepAlive
            // Refused from the header alone: the body is never read.
            if let length = head.headers.first(name: "content-length").flatMap(Int.init),
               length > settings.maximumBodySize {
                finish(context, .error(.payloadTooLarge, tooLarge))
                return
            }
            state = .receiving(head: head, match: settings.router.match(uri: head.uri, method: head.method), body: nil)
            // curl asks before sending a larger body; say yes rather than make it wait a second.
            if head.headers["expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                let proceed = HTTPResponseHead(version: head.version, status: .continue)
                context.writeAndFlush(wrapOutboundOut(.head(proceed)), promise: nil)
            }
        case .body(var chunk):
            guard case .receiving(let head, let match, var body) = state else { return }
            // Chunked bodies carry no length up front: count as they arrive.
            guard (body?.readableBytes ?? 0) + chunk.readableBytes <= settings.maximumBodySize else {
                finish(context, .error(.payloadTooLarge, tooLarge))
                return
            }
            if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
            state = .receiving(head: head, match: match, body: body)
        case .end:
            guard case .receiving(let head, let match, let body) = state else { return }
            state = .answering
            respond(context, head: head, match: match, body: body)
        }
    }

    private var tooLarge: String { "request body larger than \(settings.maximumBodySize) bytes" }

    private func respond(_ context: ChannelHandlerContext, head: HTTPRequestHead, match: APIRouter.Match, body: ByteBuffer?) {
        let path = String(head.uri.prefix(200))  // echoed back in messages: keep it short
        switch match {
        case .notFound:
            answer(context, .error(.notFound, "no such endpoint: \(path)"))
        case .methodNotAllowed(let allowed):
            let list = allowed.map(\.rawValue).joined(separator: ", ")
            var response = APIResponse.error(.methodNotAllowed, "\(head.method.rawValue) is not allowed on \(path); use \(list)")
            response.headers.append(("Allow", list))
            answer(context, response)
        case .route(let route):
            switch route.work {
            case .read(let read):
                answer(context, Self.outcome { try read(settings.control) })
            case .change(let prepare):
                let call: @Sendable (VMControl) throws -> APIResponse
                do {
                    call = try prepare(body.map { Data($0.readableBytesView) })
                } catch {
                    answer(context, Self.outcome { throw error })
                    return
                }
                runOffLoop(context, call)
            }
        }
    }

    /// Runs a state change on the control queue and answers from the loop when done,
    /// so the loop keeps serving `vm.info` and other clients meanwhile.
    private func runOffLoop(_ context: ChannelHandlerContext, _ call: @escaping @Sendable (VMControl) throws -> APIResponse) {
        let registry = settings.registry, control = settings.control, loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        registry.owe()
        settings.controlQueue.async {
            // Queued before stop() and run after: the VM is going away, so do not touch it.
            let response = registry.isClosed
                ? APIResponse.error(.serviceUnavailable, "the API server is stopping")
                : Self.outcome { try call(control) }
            let handed = registry.onLoop(loop) {
                let (handler, context) = bound.value
                handler.answer(context, response).whenComplete { _ in registry.answered() }
            }
            if !handed { registry.answered() }
        }
    }

    /// Maps whatever a control call did to an answer; nothing thrown escapes.
    private static func outcome(_ body: () throws -> APIResponse) -> APIResponse {
        do {
            return try body()
        } catch let e as ControlError {
            return .error(e)
        } catch {
            return .error(.internalServerError, "internal error: \(error)")
        }
    }

    /// Writes `response`; closes afterwards if the client asked to, or half-closed.
    @discardableResult
    private func answer(_ context: ChannelHandlerContext, _ response: APIResponse, close: Bool = false) -> EventLoopFuture<Void> {
        let close = close || !keepAlive || inputClosed
        var headers = HTTPHeaders()
        if let body = response.body {
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(body.count))
        }
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        if close { headers.add(name: "Connection", value: "close") }
        // Before writing: writing `.end` makes NIO's pipelining handler deliver the next
        // buffered request at once, and that one must find this handler idle.
        if case .answering = state { state = .idle }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))),
                      promise: nil)
        if let body = response.body {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if close {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)  // completes on this loop
            written.whenComplete { _ in bound.value.close(promise: nil) }
        }
        return written
    }

    /// Answers before the request is complete, then drops the connection.
    private func finish(_ context: ChannelHandlerContext, _ response: APIResponse) {
        state = .finished
        answer(context, response, close: true)
    }

    /// A client that pipelines requests but never reads the answers must not make the
    /// server queue answers without end: stop reading from it while its socket is full.
    /// (If it stays that way, the idle timeout closes it.)
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        context.channel.setOption(ChannelOptions.autoRead, value: context.channel.isWritable).whenFailure { _ in }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let idle as IdleStateHandler.IdleStateEvent where idle == .read:
            // A client that sends nothing for the idle timeout loses its connection —
            // unless it is waiting for a state change to complete.
            if case .answering = state { return }
            context.close(promise: nil)
        case ChannelEvent.inputClosed:
            inputClosed = true
            switch state {
            case .answering: break  // answer first; answer() closes afterwards
            default: context.close(promise: nil)
            }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let parseError = error as? HTTPParserError else {
            context.close(promise: nil)  // I/O errors: the client is gone
            return
        }
        switch state {
        case .idle, .receiving:
            // Nothing written for this request yet, so one error answer fits.
            if case .headerOverflow = parseError {
                finish(context, .error(.requestHeaderFieldsTooLarge, "request headers are too large"))
            } else {
                finish(context, .error(.badRequest, "malformed HTTP request (\(parseError))"))
            }
        case .answering, .finished:
            context.close(promise: nil)
        }
    }
}
