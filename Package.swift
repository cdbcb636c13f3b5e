// swift-tools-version:6.0
import PackageDescription

// Layers, lowest first; a target only imports targets above it in this list.
//   CKVM, CFileIO, CTapRing, CSeccomp, CTSan (C shims), Posix → Events, KVM, GuestMemory, Seccomp → X86, Devices,
//   Storage, Network → Virtio → VMState → Migration → VMM → skiff;  API (control plane, no VM imports) → skiff;
//   SkiffCLI (the command-line parser, imports nothing) → skiff;
//   Posix, CChaChaPoly → SecureChannel (the encrypted migration stream, no VM imports) → skiff (MigrationTransport)
// Migration is the wire protocol and its TCP stream (no VM objects); VMM drives it.

// The release link: one static executable, by lld, with Linker/startup.order
// (scripts/make-startup-order.sh) first in the code. Each function needs a
// section of its own for that, hence `-function-sections` on Skiff's modules.
let packageDirectory = String(#filePath.dropLast("Package.swift".count))
let releaseLink = ["-static-executable", "-use-ld=lld",
                   "-Xlinker", "--symbol-ordering-file=\(packageDirectory)Linker/startup.order",
                   "-Xlinker", "--no-warn-symbol-ordering"]
let functionSections = SwiftSetting.unsafeFlags(["-Xfrontend", "-function-sections"],
                                                .when(platforms: [.linux], configuration: .release))

let package = Package(
    name: "Skiff",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "skiff", targets: ["skiff"]),
        // Only for the fuzz harnesses (Fuzz/Package.swift), which build against these modules.
        .library(name: "SkiffParsers", targets: ["Virtio", "Storage", "X86", "API", "VMState", "Migration"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),  // APITests only: reads docs/api.yaml
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),  // SecureChannel: Noise primitives
    ],
    targets: [
        // C shims: <linux/kvm.h>, non-variadic ioctl wrappers, constants.
        .target(name: "CKVM"),
        // O_DIRECT and fallocate(2), which Glibc's Swift module hides.
        .target(name: "CFileIO"),
        // An io_uring restricted to writev on one TAP (several frames per system call).
        .target(name: "CTapRing"),
        // The x86-64 system call table, loading a BPF program, the SIGSYS handler
        // (the programs are compiled in Seccomp; no libseccomp).
        .target(name: "CSeccomp"),
        // ThreadSanitizer happens-before annotations for Posix's `Lock` (no-ops without TSan).
        .target(name: "CTSan"),

        // errno-carrying errors, the EINTR-retry wrapper, EventFD, Lock (a TSan-aware Mutex).
        .target(name: "Posix", dependencies: ["CKVM", "CTSan"]),
        // The device event loop (epoll) and joinable threads.
        .target(name: "Events", dependencies: ["CKVM", "Posix"]),

        .target(name: "KVM", dependencies: ["CKVM", "Posix"]),
        // Per-thread-role system call filters (`--seccomp`); see docs/security.md.
        .target(name: "Seccomp", dependencies: ["CSeccomp", "CKVM", "Posix"]),
        .target(name: "GuestMemory", dependencies: ["CKVM"]),
        .target(name: "X86", dependencies: ["GuestMemory"]),
        .target(name: "Devices", dependencies: ["CKVM", "Posix"]),
        .target(name: "Storage", dependencies: ["CKVM", "CFileIO", "Posix"]),
        .target(name: "Network", dependencies: ["CKVM", "CTapRing"]),
        .target(name: "Virtio", dependencies: ["CKVM", "Posix", "Events", "GuestMemory", "Devices", "Storage", "Network",
                                               .product(name: "Logging", package: "swift-log")]),
        .target(name: "VMState", dependencies: ["CKVM", "KVM", "Devices", "Virtio"]),
        // Live migration's framed protocol, config checks and plain TCP `ByteStream`.
        .target(name: "Migration", dependencies: ["Posix", "VMState"]),
        // The control plane (`--api-socket`): HTTP over a unix socket; talks to the VM only
        // through its own `VMControl` protocol, so it does not import VMM.
        .target(name: "API", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        // The migration stream's encryption: Noise_NNpsk0_25519_ChaChaPoly_SHA256 as a
        // `ByteStream`, and the pre-shared key file. Knows nothing of VMs.
        // ChaCha20-Poly1305 in the caller's memory, from the BoringSSL that swift-crypto links (cchachapoly.h says why).
        .target(name: "CChaChaPoly", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "SecureChannel", dependencies: ["Posix", "CChaChaPoly", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "VMM", dependencies: ["Posix", "Events", "Seccomp", "KVM", "GuestMemory", "X86", "Devices", "Storage", "Network", "Virtio", "VMState", "Migration",
                                            .product(name: "Logging", package: "swift-log"),
                                            .product(name: "Crypto", package: "swift-crypto")]),
        // `skiff`'s command-line parser: declared options, no reflection (docs/performance.md).
        .target(name: "SkiffCLI"),
        // Release builds are one static executable: no dynamic loader, no relocations at
        // start-up (7.4 M → 3.3 M instructions before the guest runs, ~4.6 MiB less RSS),
        // linked by lld with the functions start-up runs placed together (8.8 → 5.9 MiB;
        // docs/performance.md). Debug builds stay dynamic for the sanitizers and debuggers.
        .executableTarget(name: "skiff", dependencies: [
            "SkiffCLI", "VMM", "VMState", "Migration", "Posix", "Storage", "Virtio", "API", "SecureChannel", "Seccomp",
            .product(name: "Logging", package: "swift-log"),
        ], linkerSettings: [.unsafeFlags(releaseLink, .when(platforms: [.linux], configuration: .release))]),

        // Benchmark / tooling driver for the storage layer (also the crash-consistency test's writer).
        .executableTarget(name: "skiff-storage-bench", dependencies: ["Storage", "Posix"], path: "Benchmarks/StorageBench"),
        // What `--api-socket` costs: start-up time, RSS, request latency (see README, API).
        .executableTarget(name: "skiff-api-bench", dependencies: ["API"], path: "Benchmarks/APIBench"),
        // Encrypted vs plain throughput over loopback TCP (docs/migration-security.md).
        .executableTarget(name: "skiff-securechannel-bench",
                          dependencies: ["SecureChannel", "Posix", .product(name: "Crypto", package: "swift-crypto")],
                          path: "Benchmarks/SecureChannelBench"),

        .testTarget(name: "SkiffCLITests", dependencies: ["SkiffCLI"]),
        .testTarget(name: "KVMTests", dependencies: ["KVM"]),
        .testTarget(name: "SeccompTests", dependencies: ["Seccomp", "CSeccomp"]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory"]),
        .testTarget(name: "X86Tests", dependencies: ["X86", "GuestMemory"]),
        .testTarget(name: "DevicesTests", dependencies: ["Devices", "Posix"]),
        .testTarget(name: "EventsTests", dependencies: ["Events", "Posix", "CTSan"]),
        .testTarget(name: "StorageTests", dependencies: [
            "Storage", "CKVM", .product(name: "PropertyBased", package: "swift-property-based"),
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
        .testTarget(name: "SecureChannelTests", dependencies: ["SecureChannel", "Posix",
                                                               .product(name: "Crypto", package: "swift-crypto")],
                    exclude: ["Fixtures"]),
        .testTarget(name: "MigrationTests", dependencies: ["Migration", "Posix", "VMState"]),
        .testTarget(name: "VMMTests", dependencies: ["VMM", "Events", "VMState", "KVM", "CKVM", "Virtio", "Migration", "Posix", "GuestMemory", "Storage"]),
        // Runs the built `skiff` binary against firmware guests and the guest Linux on /dev/kvm.
        .testTarget(name: "IntegrationTests", dependencies: ["skiff"]),
    ],
    swiftLanguageModes: [.v6]
)

for target in package.targets where target.type == .regular || target.type == .executable {
    target.swiftSettings = (target.swiftSettings ?? []) + [functionSections]
}
