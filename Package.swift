// swift-tools-version:6.0
import PackageDescription

// Layers, lowest first; a target only imports targets above it in this list.
//   CKVM, CAIO (C shims), Posix → Events, KVM, GuestMemory → X86, Devices, Storage,
//   Network → Virtio → VMState → VMM → skiff;  API (control plane, no VM imports) → skiff
let package = Package(
    name: "Skiff",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "skiff", targets: ["skiff"]),
        // Only for the fuzz harnesses (Fuzz/Package.swift), which build against these modules.
        .library(name: "SkiffParsers", targets: ["Virtio", "Storage", "X86", "API", "VMState"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),  // APITests only: reads docs/api.yaml
    ],
    targets: [
        // C shims: <linux/kvm.h>, non-variadic ioctl wrappers, constants.
        .target(name: "CKVM"),
        // libaio loaded at run time (dlopen), so a host without it falls back to synchronous I/O.
        .target(name: "CAIO", linkerSettings: [.linkedLibrary("dl")]),

        // errno-carrying errors, the EINTR-retry wrapper, EventFD.
        .target(name: "Posix", dependencies: ["CKVM"]),
        // The device event loop (epoll) and joinable threads.
        .target(name: "Events", dependencies: ["CKVM", "Posix"]),

        .target(name: "KVM", dependencies: ["CKVM", "Posix"]),
        .target(name: "GuestMemory", dependencies: ["CKVM"]),
        .target(name: "X86", dependencies: ["GuestMemory"]),
        .target(name: "Devices", dependencies: ["CKVM", "Posix"]),
        .target(name: "Storage", dependencies: ["CAIO", "Posix"]),
        .target(name: "Network", dependencies: ["CKVM"]),
        .target(name: "Virtio", dependencies: ["CKVM", "Posix", "Events", "GuestMemory", "Devices", "Storage", "Network",
                                               .product(name: "Logging", package: "swift-log")]),
        .target(name: "VMState", dependencies: ["CKVM", "KVM", "Devices", "Virtio"]),
        // The control plane (`--api-socket`): HTTP over a unix socket; talks to the VM only
        // through its own `VMControl` protocol, so it does not import VMM.
        .target(name: "API", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .target(name: "VMM", dependencies: ["Posix", "Events", "KVM", "GuestMemory", "X86", "Devices", "Storage", "Network", "Virtio", "VMState",
                                            .product(name: "Logging", package: "swift-log")]),
        .executableTarget(name: "skiff", dependencies: [
            "VMM", "VMState", "Storage", "Virtio", "API",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Benchmark / tooling driver for the storage layer (also the crash-consistency test's writer).
        .executableTarget(name: "skiff-storage-bench", dependencies: ["Storage"], path: "Benchmarks/StorageBench"),
        // What `--api-socket` costs: start-up time, RSS, request latency (see README, API).
        .executableTarget(name: "skiff-api-bench", dependencies: ["API"], path: "Benchmarks/APIBench"),

        .testTarget(name: "KVMTests", dependencies: ["KVM"]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory"]),
        .testTarget(name: "X86Tests", dependencies: ["X86", "GuestMemory"]),
        .testTarget(name: "DevicesTests", dependencies: ["Devices"]),
        .testTarget(name: "EventsTests", dependencies: ["Events", "Posix"]),
        .testTarget(name: "StorageTests", dependencies: [
            "Storage", .product(name: "PropertyBased", package: "swift-property-based"),
        ]),
        .testTarget(name: "NetworkTests", dependencies: ["Network"]),
        .testTarget(name: "VirtioTests", dependencies: ["Virtio", "Events", "GuestMemory", "Devices", "Storage", "Network"]),
        .testTarget(name: "VMStateTests", dependencies: ["VMState", "KVM", "CKVM", "Devices", "Virtio", "Events", "GuestMemory", "Storage", .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "APITests", dependencies: [
            "API",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Yams", package: "Yams"),
        ]),
        .testTarget(name: "VMMTests", dependencies: ["VMM", "Events", "VMState", "KVM", "CKVM", "Virtio"]),
        // Runs the built `skiff` binary against firmware guests and the guest Linux on /dev/kvm.
        .testTarget(name: "IntegrationTests", dependencies: ["skiff"]),
    ],
    swiftLanguageModes: [.v5]
)
