import Posix
import ArgumentParser
import Storage
#if canImport(Glibc)
import Glibc
#endif

/// `skiff image create|info|check`: make and inspect disk images without a VM.
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Create and inspect disk images (qcow2, raw).",
        subcommands: [Create.self, Info.self, Check.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create",
            abstract: "Create a new image (qcow2 by default; sparse either way).",
            discussion: "Examples:\n  skiff image create --size 8G disk.qcow2\n  skiff image create --backing base.qcow2 overlay.qcow2")

        @Option(help: "Virtual size, e.g. 512M, 8G (defaults to the backing file's size).")
        var size: String?

        @Option(help: "Backing file for a qcow2 overlay (relative names are relative to FILE).")
        var backing: String?

        @Option(name: .customLong("backing-format"), help: "Format of the backing file: qcow2 or raw (detected when omitted).")
        var backingFormat: String?

        @Option(name: .customLong("cluster-size"), help: "qcow2 cluster size, 4K to 2M (default 64K).")
        var clusterSize: String?

        @Option(help: "Image format: qcow2 or raw.")
        var format: String = "qcow2"

        @Argument(help: "The image file to create (must not exist).")
        var file: String

        func run() throws {
            do {
                let bytes = try size.map { try ByteSize(parsing: $0).bytes }
                switch format {
                case "raw":
                    guard backing == nil, clusterSize == nil else {
                        throw ValidationError("--backing and --cluster-size apply to qcow2 only")
                    }
                    guard let bytes else { throw ValidationError("--size is required for a raw image") }
                    try RawImage.create(path: file, size: bytes)
                case "qcow2":
                    var o = Qcow2Image.CreateOptions()
                    if let cs = clusterSize {
                        o.clusterSize = try ByteSize(parsing: cs).bytes
                        guard (4096 ... 2 << 20).contains(o.clusterSize) else {
                            throw ValidationError("--cluster-size must be a power of two from 4K to 2M")
                        }
                    }
                    o.backingFile = backing
                    if let bf = backingFormat {
                        guard let f = DiskFormat(rawValue: bf) else { throw ValidationError("unknown backing format '\(bf)'") }
                        o.backingFormat = f
                    }
                    guard bytes != nil || backing != nil else { throw ValidationError("--size is required without --backing") }
                    try Qcow2Image.create(path: file, virtualSize: bytes, options: o)
                default:
                    throw ValidationError("unknown format '\(format)' (qcow2 or raw)")
                }
                let info = try ImageInfo.read(path: file)
                print("Formatting '\(file)', fmt=\(info.format.rawValue) size=\(info.virtualSize)"
                    + (info.clusterSize.map { " cluster_size=\($0)" } ?? "")
                    + (info.backingFile.map { " backing_file=\($0)" } ?? ""))
            } catch let e as StorageError {
                throw fail(e)
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "info", abstract: "Show format, virtual size, allocated bytes and the backing chain.")

        @Flag(name: [.customShort("U"), .customLong("force-share")], help: "Read an image that another process has open for writing.")
        var forceShare = false

        @Argument(help: "The image file.")
        var file: String

        func run() throws {
            do {
                print(try ImageInfo.read(path: file, forceShare: forceShare).formatted, terminator: "")
            } catch let e as StorageError {
                throw fail(e)
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Check a qcow2 image for leaked clusters and corruption.",
            discussion: "Exit status as qemu-img check: 0 no errors, 2 corruption, 3 leaked clusters only, 1 the check failed.")

        @Argument(help: "The image file.")
        var file: String

        func run() throws {
            let report: ImageCheckReport
            do {
                guard try DiskImageOpener.detectFormat(path: file) == .qcow2 else {
                    print("This image format (raw) does not support checks")
                    throw ExitCode(63)
                }
                let image = try Qcow2Image(path: file, readOnly: true)
                report = try image.check()
            } catch let e as StorageError {
                throw fail(e)
            }
            print(report.formatted, terminator: "")
            if report.exitCode != 0 { throw ExitCode(report.exitCode) }
        }
    }
}

/// Prints a storage error the way the other subcommands do and gives the failure exit status.
private func fail(_ e: StorageError) -> ExitCode {
    StandardError.write("skiff image: \(e)\n")
    return ExitCode.failure
}
