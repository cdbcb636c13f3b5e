import Posix
#if canImport(Glibc)
import Glibc
#endif
import Storage

// skiff-storage-bench: the storage benchmark driver, and the crash-consistency test's writer.
//   skiff-storage-bench crash-writer IMAGE OPSFILE
//   skiff-storage-bench run --image FILE --workload W [--qd N] [--cache none|writeback] [--count N]
let args = Array(CommandLine.arguments.dropFirst())
do {
    switch args.first {
    case "crash-writer" where args.count == 3:
        try CrashWriter.run(image: args[1], opsFile: args[2])
    case "run":
        try Bench.main(Array(args.dropFirst()))
    default:
        StandardError.write("usage: skiff-storage-bench crash-writer IMAGE OPSFILE | run --image FILE --workload W [--qd N] [--cache none|writeback] [--count N]\n")
        exit(2)
    }
} catch {
    StandardError.write("skiff-storage-bench: \(error)\n")
    exit(1)
}
