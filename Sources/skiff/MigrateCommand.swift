import API
import Dispatch
import FoundationEssentials
import Migration
import Posix
import SkiffCLI

/// `skiff migrate --api-socket PATH (--migration-key FILE | --insecure-migration) tcp:HOST:PORT`:
/// `vm.send-migration` to the skiff serving the socket, a progress line on stderr
/// while it runs (from `vm.info`'s migration counters), and the summary at the end.
struct MigrateCommand {
    static let command = Command(
        name: "migrate", abstract: "Live-migrate the VM to a `skiff run --incoming` on another host.",
        discussion: """
        Pre-copies the VM's memory while it runs, then stops it for the last pages and its state, \
        and exits 0 once the destination runs it (the source skiff then exits 0, "migrated"). \
        If anything fails before that, the VM runs on at the source and this exits non-zero.

        Example:
          skiff run --incoming tcp:0.0.0.0:6000 --insecure-migration       # on host B
          skiff migrate --api-socket /tmp/vm.sock --insecure-migration tcp:hostB:6000
        """,
        options: APIClientOptions.options + [
            .option("migration-key", value: "path", help: "The migration key file, the same on both hosts."),
            .flag("insecure-migration", help: "Plain, unauthenticated TCP instead of a key (for comparisons)."),
            .option("downtime-limit", value: "ms", .unsigned,
                    help: "The longest the guest may be stopped for the switch-over, in milliseconds."),
        ],
        positionals: [Positional("tcp:host:port", help: "Where `skiff run --incoming` listens.")],
        run: { try MigrateCommand($0).run() })

    var options: APIClientOptions
    var migrationKey: String?
    var insecureMigration: Bool
    var downtimeLimit: UInt64?
    var destination: String

    init(_ a: ParsedArguments) throws {
        options = try APIClientOptions(a)
        migrationKey = a.string("migration-key")
        insecureMigration = a.flag("insecure-migration")
        downtimeLimit = try a.integer("downtime-limit")
        destination = a.argument("tcp:host:port")
    }

    func run() throws {
        let endpoint: MigrationEndpoint
        do {
            endpoint = try MigrationEndpoint(parsing: destination)
            _ = try MigrationTransport.wrapCheck(try MigrationSecurity.from(keyPath: migrationKey, insecure: insecureMigration))
        } catch {
            throw ValidationError("\(error)")
        }
        if insecureMigration {
            printError("skiff: warning: --insecure-migration: the VM's memory crosses the network unencrypted and unauthenticated")
        }
        let key = migrationKey.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        // The VMM takes an address, not a name (its filters forbid the look-up): look it up here.
        let target = try endpoint.numeric()
        let request = SendMigrationRequest(destinationURL: target.description, migrationKey: key,
                                           insecureMigration: insecureMigration ? true : nil, downtimeLimitMs: downtimeLimit)
        let body = try JSONEncoder().encode(request)
        let client = APIClient(path: options.apiSocket, timeout: max(options.timeout, 600))
        let done = DispatchSemaphore(value: 0)
        let outcome = OutcomeBox()
        try DetachedThread.start(name: "skiff-migrate") {
            do {
                outcome.set(.success(try client.send(method: .PUT, target: "/api/v1/vm.send-migration", body: body)))
            } catch {
                outcome.set(.failure(error))
            }
            done.signal()
        }
        let poller = APIClient(path: options.apiSocket, timeout: 5)
        var lastLine = ""
        while done.wait(timeout: .now() + 0.1) == .timedOut {
            guard let counters = try? poller.info().counters, let iteration = counters["migration_iteration"],
                  counters["migration_bytes"] ?? 0 > 0 else { continue }
            let line = Self.progressLine(iteration: iteration, counters: counters)
            if line != lastLine { printError(line); lastLine = line }
        }
        let response: APIClient.Response
        switch outcome.value! {
        case .success(let r): response = r
        case .failure(let e): throw APICommandError(description: "\(e)")
        }
        guard response.status == 200 else {
            let message = (try? JSONDecoder().decode([String: String].self, from: response.body))?["error"]
                ?? "the server answered \(response.status)"
            throw APICommandError(description: "cannot migrate: \(message)")
        }
        let result = try JSONDecoder().decode(MigrationResult.self, from: response.body)
        print(String(cFormat: "migrated: total %.1f ms, downtime %.1f ms, ", result.totalMs, result.downtimeMs)
              + "\(result.bytes) bytes, \(result.iterations) iteration(s)"
              + (result.converged ? "" : ", did not converge within the bounds (switched over anyway)")
              + (result.throttlePercent > 0 ? ", vCPUs throttled up to \(result.throttlePercent)%" : ""))
    }

    static func progressLine(iteration: UInt64, counters: [String: UInt64]) -> String {
        let mib = { (b: UInt64) in String(cFormat: "%.1f MiB", Double(b) / 1048576) }
        let rate = Double(counters["migration_rate_bytes_per_s"] ?? 0) / 1048576
        let expected = Double(counters["migration_expected_downtime_us"] ?? 0) / 1000
        let throttle = counters["migration_throttle_percent"].map { $0 > 0 ? ", throttle \($0)%" : "" } ?? ""
        return "migrate: iteration \(iteration), \(mib(counters["migration_bytes"] ?? 0)) sent, "
            + String(cFormat: "%.0f MiB/s, ", rate) + "\(mib(counters["migration_dirty_bytes"] ?? 0)) dirty, "
            + String(cFormat: "expected downtime %.2f ms", expected) + throttle
    }
}

/// The PUT's outcome, handed from its thread to the main one.
private final class OutcomeBox: Sendable {
    private let stored = Lock<Result<APIClient.Response, Error>?>(nil)
    var value: Result<APIClient.Response, Error>? { stored.withLock { $0 } }
    func set(_ r: Result<APIClient.Response, Error>) { stored.withLock { $0 = r } }
}
