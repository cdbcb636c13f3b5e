import Foundation
import Storage

/// `skiff-storage-bench run`: drives an image through `AsyncDiskEngine` the way
/// `qemu-img bench` drives QEMU's block layer, with the same knobs, so the two can
/// run the same workload on the same file:
///
///     skiff-storage-bench run --image F [--write] [--count N] [--depth D] [--size BYTES]
///                             [--step BYTES] [--cache none|writeback]
///
/// Request i goes to offset (i * step) mod virtual size (step defaults to the
/// request size: sequential), exactly qemu-img bench's pattern; a large odd step
/// gives a strided, cache-unfriendly "random" pattern. Prints one line:
/// `ops=N bytes=B seconds=S mib_s=M iops=I`.
enum Bench {
    static func main(_ args: [String]) throws {
        var image: String?
        var write = false, count = 1000, depth = 1, size = 4096, step: Int?, cache = "none"
        var i = 0
        func value() throws -> String {
            i += 1
            guard i < args.count else { throw StorageError(.invalidArgument, "\(args[i - 1]) needs a value") }
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--image": image = try value()
            case "--write": write = true
            case "--count": count = Int(try value()) ?? 0
            case "--depth": depth = Int(try value()) ?? 0
            case "--size": size = Int(try ByteSize(parsing: try value()).bytes)
            case "--step": step = Int(try ByteSize(parsing: try value()).bytes)
            case "--cache": cache = try value()
            default: throw StorageError(.invalidArgument, "unknown option \(args[i])")
            }
            i += 1
        }
        guard let image, count > 0, depth > 0, size > 0, cache == "none" || cache == "writeback" else {
            throw StorageError(.invalidArgument, "need --image, positive --count/--depth/--size, --cache none|writeback")
        }
        let disk = try DiskImageOpener.open(path: image, readOnly: !write, direct: cache == "none")
        let engine = try AsyncDiskEngine(image: disk, queueDepth: depth)
        let stride = UInt64(step ?? size)
        let diskSize = disk.virtualSize
        guard diskSize >= UInt64(size) else { throw StorageError(.invalidArgument, "image smaller than a request") }

        // One aligned buffer per in-flight request (O_DIRECT needs alignment).
        var buffers: [UnsafeMutableRawBufferPointer] = []
        for _ in 0 ..< depth {
            var p: UnsafeMutableRawPointer?
            guard posix_memalign(&p, 4096, size) == 0, let p else { throw StorageError(.io, "out of memory") }
            memset(p, 0xA5, size)
            buffers.append(UnsafeMutableRawBufferPointer(start: p, count: size))
        }
        defer { buffers.forEach { free($0.baseAddress) } }

        var submitted = 0, completed = 0
        var failure: StorageError?
        func submit(_ slot: Int) {
            let offset = (UInt64(submitted) &* stride) % diskSize
            let at = min(offset, diskSize - UInt64(size))
            submitted += 1
            let request: DiskIORequest = write
                ? .write(offset: at, buffers: [UnsafeRawBufferPointer(buffers[slot])])
                : .read(offset: at, buffers: [buffers[slot]])
            engine.submit(request) { result in
                completed += 1
                if case .failure(let e) = result, failure == nil { failure = e }
                if submitted < count { submit(slot) }
            }
        }
        let start = DispatchTime.now().uptimeNanoseconds
        for slot in 0 ..< min(depth, count) { submit(slot) }
        while completed < count {
            var pfd = pollfd(fd: engine.completionFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 1000)
            engine.processCompletions()
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if let failure { throw failure }
        try disk.close()
        let bytes = Double(count) * Double(size)
        print("ops=\(count) bytes=\(Int(bytes)) seconds=\(String(format: "%.3f", seconds)) "
            + "mib_s=\(String(format: "%.1f", bytes / seconds / 1_048_576)) iops=\(String(format: "%.0f", Double(count) / seconds)) "
            + "engine=\(engine.isAsynchronous ? "io-threads" : "sync")")
    }
}
