import Foundation

/// The test guests from `firmware/`, built on first use by the project's script.
enum Firmware {
    struct BuildFailed: Error, CustomStringConvertible {
        let output: String
        var description: String { "scripts/build-firmware.sh failed:\n\(output)" }
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var built: Set<String> = []  // Sound because: read and written only with `lock` held.

    /// Builds `name` with scripts/build-firmware.sh (once per test run; the script
    /// is incremental) and returns the ELF's path.
    static func path(_ name: String) throws -> String {
        lock.lock(); defer { lock.unlock() }
        let out = SkiffProcess.repoRoot.appendingPathComponent("firmware/out/\(name).elf").path
        if !built.contains(name) {
            let script = SkiffProcess.repoRoot.appendingPathComponent("scripts/build-firmware.sh")
            let result = try SkiffProcess.runTool(URL(fileURLWithPath: "/bin/bash"), [script.path, name], timeout: 300)
            guard result.status == 0 else { throw BuildFailed(output: result.stdout + result.stderr) }
            built.insert(name)
        }
        return out
    }
}
