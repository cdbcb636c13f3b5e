import Dispatch
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// The control plane `skiff run --api-socket PATH` serves: Cloud Hypervisor's REST
/// API (`/api/v1/…`) as HTTP/1.1 over a unix socket, answered through `VMControl`.
///
/// Lifecycle: `start()` once; `stop()` on every exit path of the process (normal end,
/// guest shutdown, crash handling, signals) so the socket file does not outlive the
/// VM. `stop()` must not be called on the server's event loop or from inside a
/// `VMControl` method (it waits for those).
public final class APIServer: Sendable {
    public struct Options: Sendable {
        /// Bodies above this are refused with 413 (from Content-Length when sent).
        public var maximumBodySize = 64 * 1024
        /// Request line plus headers above this are refused with 431.
        public var maximumHeaderSize = 16 * 1024
        /// Connections above this are answered 503 and closed.
        public var maximumConnections = 64
        /// A connection that sends nothing for this long is closed.
        public var idleTimeout: Duration = .seconds(10)
        /// How long `stop()` waits for answers still owed (e.g. to `vm.shutdown`).
        public var drainTimeout: Duration = .seconds(2)
        public init() {}
    }

    public let path: String
    private let control: VMControl
    private let options: Options
    private let registry: ConnectionRegistry
    private let controlQueue = DispatchQueue(label: "skiff.api.control")

    private struct Running {
        var group: MultiThreadedEventLoopGroup
        var channel: Channel
        var bound: UnixSocketListener.Bound
    }
    private let running = NIOLockedValueBox<Running?>(nil)

    public init(path: String, control: VMControl, options: Options = Options()) {
        self.path = path
        self.control = control
        self.options = options
        self.registry = ConnectionRegistry(maximumConnections: options.maximumConnections)
    }

    /// Binds `path` (mode 0600) and starts serving on one event-loop thread, made here
    /// rather than in `init` so a VM without `--api-socket` pays for nothing.
    /// Throws `APIServerError` if `path` is served by another skiff, is not a socket,
    /// or cannot be bound; a stale socket left by a dead skiff is replaced.
    public func start() throws {
        try running.withLockedValue { running in
            guard running == nil else { throw APIServerError("the API server is already running") }
            guard !registry.isClosed else { throw APIServerError("the API server was stopped") }
            let bound = try UnixSocketListener.bind(path: path)
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            do {
                let channel = try makeBootstrap(group).withBoundSocket(bound.descriptor).wait()
                running = Running(group: group, channel: channel, bound: bound)
            } catch {
                // The descriptor is NIO's once handed over (it closes it on its failure
                // paths): closing it here too could close someone else's reused descriptor.
                UnixSocketListener.remove(path: path, bound: bound)
                try? group.syncShutdownGracefully()
                throw APIServerError("cannot serve the API at \(path): \(error)")
            }
        }
    }

    /// Stops serving: no new connections; answers still owed get `drainTimeout` to be
    /// written; then every connection closes, the thread ends and `path` is removed
    /// (only if it is still the socket this server made). Safe to call more than once.
    public func stop() {
        guard let current = running.withLockedValue({ r -> Running? in defer { r = nil }; return r }) else {
            _ = registry.close()
            return
        }
        try? current.channel.close().wait()
        let deadline = NIODeadline.now() + TimeAmount(options.drainTimeout)
        while registry.answersOwed > 0, NIODeadline.now() < deadline {
            usleep(5_000)
        }
        for channel in registry.close() {
            try? channel.close().wait()
        }
        try? current.group.syncShutdownGracefully()
        UnixSocketListener.remove(path: path, bound: current.bound)
    }

    /// Runs `body` on each of the server's event-loop threads and waits for it (the
    /// caller loads the API's seccomp filter there: NIO makes those threads, so this
    /// is the hook into them). Throws the first error `body` throws.
    public func runOnServerThreads(_ body: @escaping @Sendable () throws -> Void) throws {
        guard let group = running.withLockedValue({ $0?.group }) else {
            throw APIServerError("the API server is not running")
        }
        for loop in group.makeIterator() {
            try loop.submit(body).wait()
        }
    }

    /// Connections open now (for tests and diagnostics).
    public var openConnections: Int { registry.openConnections }

    private func makeBootstrap(_ group: MultiThreadedEventLoopGroup) -> ServerBootstrap {
        let settings = APIRequestHandler.Settings(router: .standard, control: control, controlQueue: controlQueue,
                                                  registry: registry, maximumBodySize: options.maximumBodySize)
        let registry = self.registry, options = self.options
        let limits = {
            var limits = NIOHTTPDecoderLimitConfiguration()
            limits.maxHeaderFieldSize = options.maximumHeaderSize
            limits.maxHeaderListSize = options.maximumHeaderSize
            limits.maxHeaderFieldCount = 100
            return limits
        }()
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            // Out of descriptors (EMFILE): pause accepting a moment instead of spinning the loop.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler()) }
            }
            // A client that shuts down its sending side still gets its answer.
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                guard registry.admit(channel) else {
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            HTTPResponseEncoder(),
                            RejectingHandler(message: "too many API connections (at most \(options.maximumConnections))"),
                        ])
                    }
                }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(IdleStateHandler(readTimeout: TimeAmount(options.idleTimeout)))
                    try sync.configureHTTPServerPipeline(withErrorHandling: false, withEncoderConfiguration: .init(),
                                                         withDecoderLimitConfiguration: limits)
                    try sync.addHandler(APIRequestHandler(settings))
                }
            }
    }
}
