import API
import Foundation

// What `--api-socket` costs a skiff process: time to bind and answer the first
// request, the memory that adds (VmRSS), and the latency of later requests.
// Run the release build: `swift build -c release --product skiff-api-bench`.

/// A VM that answers at once, so only the API's own cost is measured.
final class IdleVM: VMControl, Sendable {
    func ping() -> PingInfo { PingInfo(buildVersion: "bench", version: "bench", pid: Int64(getpid())) }
    func info() -> VMInfo {
        VMInfo(state: VMInfo.stateRunning,
               config: VMConfigInfo(kernel: "/vmlinux", initrd: nil, cmdline: "console=ttyS0",
                                    cpus: .init(bootVCPUs: 1), memory: .init(size: 256 << 20)),
               counters: ["uptime_ms": 1])
    }
    func pause() throws {}
    func resume() throws {}
    func shutdown() throws {}
    func reboot() throws {}
    func shutdownVMM() throws {}
}

/// A /proc/self/status figure in KiB: VmRSS, or its parts RssAnon (heap, stacks) and
/// RssFile (code and data pages mapped from the binary and libraries).
func statusKiB(_ field: String) -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
}

func residentKiB() -> Int { statusKiB("VmRSS") }

func milliseconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
}

// `skiff-api-bench serve PATH`: serve the idle VM until `vmm.shutdown`, to try curl against.
if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "serve" {
    final class ServedVM: VMControl, Sendable {
        let base = IdleVM()
        let done = DispatchSemaphore(value: 0)
        func ping() -> PingInfo { base.ping() }
        func info() -> VMInfo { base.info() }
        func pause() throws {}
        func resume() throws {}
        func shutdown() throws {}
        func reboot() throws {}
        func shutdownVMM() throws { done.signal() }
    }
    let vm = ServedVM()
    let server = APIServer(path: CommandLine.arguments[2], control: vm)
    try server.start()
    vm.done.wait()
    server.stop()
    exit(0)
}

let path = "/tmp/skiff-api-bench-\(getpid()).sock"
let requests = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 2000

let rssBefore = residentKiB(), anonBefore = statusKiB("RssAnon")
let t0 = DispatchTime.now()
let server = APIServer(path: path, control: IdleVM())
try server.start()
let bound = milliseconds(since: t0)
let rssBound = residentKiB()
let client = APIClient(path: path)
_ = try client.ping()
let firstAnswer = milliseconds(since: t0)
let rssStarted = residentKiB(), anonStarted = statusKiB("RssAnon")

let t1 = DispatchTime.now()
for _ in 0..<requests { _ = try client.info() }
let perInfo = milliseconds(since: t1) / Double(requests)
let t2 = DispatchTime.now()
for _ in 0..<requests { try client.pause() }
let perPause = milliseconds(since: t2) / Double(requests)
let rssAfter = residentKiB()

let t3 = DispatchTime.now()
server.stop()
let stopped = milliseconds(since: t3)

print(String(format: "start (bind + event-loop thread): %.2f ms", bound))
print(String(format: "start to first answered request:  %.2f ms", firstAnswer))
print("VmRSS before start: \(rssBefore) KiB, after start: \(rssBound) KiB (+\(rssBound - rssBefore) KiB), "
    + "after the first request: \(rssStarted) KiB "
    + "(+\(rssStarted - rssBefore) KiB), after \(2 * requests) requests: \(rssAfter) KiB (+\(rssAfter - rssBefore) KiB)")
print("  of which RssAnon (heap, stacks): +\(anonStarted - anonBefore) KiB; the rest is file-backed: code and read-only data paged in from the binary and libraries (shared, reclaimable)")
print(String(format: "GET vm.info round trip (new connection each): %.3f ms; PUT vm.pause: %.3f ms", perInfo, perPause))
print(String(format: "stop: %.2f ms", stopped))
