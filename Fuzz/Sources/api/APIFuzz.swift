import Dispatch
import Glibc
import NIOCore
import NIOEmbedded
import NIOHTTP1
@testable import API

// The API server's handling of a connection's bytes, without a socket: NIO's HTTP
// parser with the server's limits, then `APIRequestHandler` (body limits, routing,
// JSON body decoding and validation). Input: [split][bytes]; the bytes arrive in two
// reads, cut at `split`, as a slow client would send them.

/// Answers reads at once; state changes are never run (see `registry`).
private final class FuzzVM: VMControl, @unchecked Sendable {
    func ping() -> PingInfo { PingInfo(buildVersion: "fuzz", version: "0.0.0-fuzz", pid: 1, features: ["api"]) }
    func info() -> VMInfo {
        VMInfo(state: VMInfo.stateRunning,
               config: VMConfigInfo(kernel: "/boot/vmlinux", initrd: nil, cmdline: "console=ttyS0",
                                    cpus: .init(bootVCPUs: 1), memory: .init(size: 256 << 20), disks: [], net: []),
               counters: ["exits": 1])
    }
    func pause() throws {}
    func resume() throws {}
    func shutdown() throws {}
    func reboot() throws {}
    func shutdownVMM() throws {}
}

// A closed registry: a validated state change is queued but never handed back to the
// loop, because an `EmbeddedEventLoop` must not be touched from the control queue.
// Everything that reads the client's bytes happens before that, on the loop.
private let registry: ConnectionRegistry = {
    let r = ConnectionRegistry(maximumConnections: 1)
    _ = r.close()
    return r
}()
private let controlQueue = DispatchQueue(label: "fuzz-api-control")
private let settings = APIRequestHandler.Settings(router: .standard, control: FuzzVM(), controlQueue: controlQueue,
                                                  registry: registry, maximumBodySize: 64 * 1024)
private let limits: NIOHTTPDecoderLimitConfiguration = {
    // As `APIServer.makeBootstrap` configures them.
    var l = NIOHTTPDecoderLimitConfiguration()
    l.maxHeaderFieldSize = 16 * 1024
    l.maxHeaderListSize = 16 * 1024
    l.maxHeaderFieldCount = 100
    return l
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAPI(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let split = min(Int(data[0]) * 4, bytes.count)
    let channel = EmbeddedChannel()
    do {
        let sync = channel.pipeline.syncOperations
        try sync.configureHTTPServerPipeline(withErrorHandling: false, withEncoderConfiguration: .init(),
                                             withDecoderLimitConfiguration: limits)
        try sync.addHandler(APIRequestHandler(settings))
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/fuzz.sock")).wait()  // channelActive, as on accept
    } catch {
        fatalError("cannot set up the pipeline: \(error)")
    }
    for part in [UnsafeBufferPointer(rebasing: bytes[..<split]), UnsafeBufferPointer(rebasing: bytes[split...])]
    where !part.isEmpty && channel.isActive {
        _ = try? channel.writeInbound(channel.allocator.buffer(bytes: part))
    }
    while (try? channel.readOutbound(as: IOData.self)) ?? nil != nil {}
    _ = try? channel.finish(acceptAlreadyClosed: true)
    controlQueue.sync {}  // let queued state changes drop out before the next input
    return 0
}

// libFuzzer's own main is not linked (SwiftPM points `main` at this file's top-level code).
@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(_ argc: UnsafeMutablePointer<CInt>,
                       _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                       _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
var argc = CommandLine.argc, argv = CommandLine.unsafeArgv
exit(runDriver(&argc, &argv, { fuzzAPI($0, $1) }))
