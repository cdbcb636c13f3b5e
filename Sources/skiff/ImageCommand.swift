import Posix
import SkiffCLI
import Storage
#if canImport(Glibc)
import Glibc
#endif

/// `skiff image create|info|check`: make and inspect disk images without a VM.
enum ImageCommand {
    static let command = Command(
        name: "image",
        abstract: "Create and inspect disk images (qcow2, raw).",
        subcommands: [Create.command, Info.command, Check.command])

    struct Create {
        static let command = Command(
            name: "create",
            abstract: "Create a new image (qcow2 by default; sparse either way).",
            discussion: "Examples:\n  skiff image create --size 8G disk.qcow2\n  skiff image create --backing base.qcow2 overlay.qcow2",
            options: [
                .option("size", help: "Virtual size, e.g. 512M, 8G (defaults to the backing file's size)."),
                .option("backing", help: "Backing file for a qcow2 overlay (relative names are relative to FILE)."),
                .option("backing-format", help: "Format of the backing file: qcow2 or raw (detected when omitted)."),
                .option("cluster-size", help: "qcow2 cluster size, 4K to 2M (default 64K)."),
                .option("format", default: "qcow2", help: "Image format: qcow2 or raw."),
            ],
            positionals: [Positional("file", help: "The image file to create (must not exist).")],
            run: { a in
                try Create(size: a.string("size"), backing: a.string("backing"), backingFormat: a.string("backing-format"),
                           clusterSize: a.string("cluster-size"), format: a.string("format")!, file: a.argument("file")).run()
            })

        var size: String?
        var backing: String?
        var backingFormat: String?
        var clusterSize: String?
        var format: String
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

    struct Info {
        static let command = Command(
            name: "info", abstract: "Show format, virtual size, allocated bytes and the backing chain.",
            options: [.flag("force-share", short: "U", help: "Read an image that another process has open for writing.")],
            positionals: [Positional("file", help: "The image file.")],
            run: { try Info(forceShare: $0.flag("force-share"), file: $0.argument("file")).run() })

        var forceShare: Bool
        var file: String

        func run() throws {
            do {
                print(try ImageInfo.read(path: file, forceShare: forceShare).formatted, terminator: "")
            } catch let e as StorageError {
                throw fail(e)
            }
        }
    }

    struct Check {
        static let command = Command(
            name: "check",
            abstract: "Check a qcow2 image for leaked clusters and corruption.",
            discussion: "Exit status as qemu-img check: 0 no errors, 2 corruption, 3 leaked clusters only, 1 the check failed.",
            positionals: [Positional("file", help: "The image file.")],
            run: { try Check(file: $0.argument("file")).run() })

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
