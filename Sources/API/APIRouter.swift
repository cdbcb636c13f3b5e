import FoundationEssentials
import NIOHTTP1

/// One entry of the route table: Cloud Hypervisor's endpoint name, its method and
/// what answering it takes.
struct APIRoute: Sendable {
    enum Work: Sendable {
        /// Answered on the event loop at once with 200 and JSON (ping, info): never
        /// queued behind a transition in progress.
        case read(@Sendable (VMControl) throws -> APIResponse)
        /// A state change: the body is decoded and checked on the event loop (so bad
        /// input is answered at once), then the returned call runs on the control
        /// queue; success is 204 No Content, as Cloud Hypervisor answers, or 200
        /// with JSON for the few that report something (`vm.send-migration`).
        case change(@Sendable (Data?) throws -> @Sendable (VMControl) throws -> APIResponse)
    }

    /// The endpoint name under `/api/v1/`, e.g. "vm.pause".
    var name: String
    var method: HTTPMethod
    var work: Work

    static func read(_ name: String, _ answer: @escaping @Sendable (VMControl) throws -> APIResponse) -> APIRoute {
        APIRoute(name: name, method: .GET, work: .read(answer))
    }

    /// A PUT without a body (a body, if sent, is ignored — as Cloud Hypervisor does).
    static func change(_ name: String, _ call: @escaping @Sendable (VMControl) throws -> Void) -> APIRoute {
        APIRoute(name: name, method: .PUT, work: .change({ _ in { try call($0); return .noContent } }))
    }

    /// A PUT whose JSON body is decoded into `Body` and validated before the call.
    static func change<Body: RequestBody>(_ name: String, body: Body.Type,
                                          _ call: @escaping @Sendable (VMControl, Body) throws -> Void) -> APIRoute {
        change(name, body: body) { control, value -> APIResponse in
            try call(control, value)
            return .noContent
        }
    }

    /// A PUT with a JSON body whose success answer is 200 with JSON.
    static func change<Body: RequestBody>(_ name: String, body: Body.Type,
                                          answering call: @escaping @Sendable (VMControl, Body) throws -> APIResponse) -> APIRoute {
        APIRoute(name: name, method: .PUT, work: .change({ data in
            guard let data, !data.isEmpty else { throw ControlError(.badRequest, "this request needs a JSON body") }
            let value = try JSONCoding.decode(Body.self, from: data)
            try value.validate()
            return { control in try call(control, value) }
        }))
    }
}

/// Maps a request path and method to a route: 404 for an unknown path, 405 (with the
/// methods that path allows) for a known path with the wrong method.
struct APIRouter: Sendable {
    static let prefix = "/api/v1/"

    enum Match {
        case route(APIRoute)
        case notFound
        case methodNotAllowed(allowed: [HTTPMethod])
    }

    let routes: [APIRoute]

    /// The table. New endpoints are one line here plus a `VMControl` method.
    static let standard = APIRouter(routes: [
        .read("vmm.ping") { try .json($0.ping()) },
        .read("vm.info") { try .json($0.info()) },
        .read("vm.counters") { try .json($0.info().counters) },
        .change("vm.pause") { try $0.pause() },
        .change("vm.resume") { try $0.resume() },
        .change("vm.shutdown") { try $0.shutdown() },
        .change("vm.reboot") { try $0.reboot() },
        .change("vmm.shutdown") { try $0.shutdownVMM() },
        // Routed and validated now; VMControl's default implementations answer 501.
        .change("vm.snapshot", body: SnapshotRequest.self) { try $0.snapshot($1) },
        .change("vm.restore", body: RestoreRequest.self) { try $0.restore($1) },
        .change("vm.send-migration", body: SendMigrationRequest.self, answering: { try .json($0.sendMigration($1)) }),
        .change("vm.receive-migration", body: ReceiveMigrationRequest.self) { try $0.receiveMigration($1) },
    ])

    /// `uri` is the request target as sent; a query string is ignored.
    func match(uri: String, method: HTTPMethod) -> Match {
        let path = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard path.hasPrefix(Self.prefix) else { return .notFound }
        let name = path.dropFirst(Self.prefix.count)
        let candidates = routes.filter { $0.name == name }
        if candidates.isEmpty { return .notFound }
        if let route = candidates.first(where: { $0.method == method }) { return .route(route) }
        return .methodNotAllowed(allowed: candidates.map(\.method))
    }
}
