// swift-tools-version:6.0
import PackageDescription

// libFuzzer harnesses for Skiff's parsers of untrusted bytes. A package of its own so
// the sanitizer flags (`-sanitize=fuzzer,address`, which replace `main` with
// libFuzzer's) never touch the main build: `scripts/fuzz.sh` builds it. Each harness
// is one file: `LLVMFuzzerTestOneInput`, and top-level code that hands control to
// libFuzzer (`LLVMFuzzerRunDriver`), because SwiftPM links an executable's `main` to
// the module's own entry point.
let package = Package(
    name: "SkiffFuzz",
    dependencies: [
        .package(name: "Skiff", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),  // the API harness drives NIO directly
    ],
    targets: [
        // Split virtqueue chains, virtio-blk requests and virtio-net transmit over fuzzed guest RAM.
        .executableTarget(name: "fuzz-virtqueue", dependencies: [.product(name: "SkiffParsers", package: "Skiff")],
                          path: "Sources/virtqueue"),
        // qcow2 open / read / write / discard / check over a fuzzed image file.
        .executableTarget(name: "fuzz-qcow2", dependencies: [.product(name: "SkiffParsers", package: "Skiff")],
                          path: "Sources/qcow2"),
        // ELF (PVH) and bzImage kernel loaders.
        .executableTarget(name: "fuzz-loader", dependencies: [.product(name: "SkiffParsers", package: "Skiff")],
                          path: "Sources/loader"),
        // The API's HTTP request handling (NIO's parser, router, JSON bodies), without a socket.
        .executableTarget(name: "fuzz-api", dependencies: [.product(name: "SkiffParsers", package: "Skiff"),
                                                           .product(name: "NIOCore", package: "swift-nio"),
                                                           .product(name: "NIOEmbedded", package: "swift-nio"),
                                                           .product(name: "NIOHTTP1", package: "swift-nio")],
                          path: "Sources/api"),
        // The migration stream as a destination decodes it: frames, config, memory runs, state.
        .executableTarget(name: "fuzz-migration", dependencies: [.product(name: "SkiffParsers", package: "Skiff")],
                          path: "Sources/migration"),
        // The snapshot decoder: manifest.json + state.bin.
        .executableTarget(name: "fuzz-snapshot", dependencies: [.product(name: "SkiffParsers", package: "Skiff")],
                          path: "Sources/snapshot"),
    ],
    swiftLanguageModes: [.v5]
)
