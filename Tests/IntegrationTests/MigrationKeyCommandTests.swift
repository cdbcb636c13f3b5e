import Foundation
import Testing

/// `skiff migration-key FILE` through the built binary: makes a 0600 file of
/// one 64-hex-digit line, and never overwrites an existing one. Needs no KVM.
struct MigrationKeyCommandTests {
    @Test func createsAKeyFileAndRefusesToOverwriteIt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-mkey-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("migration.key").path

        let made = try SkiffProcess.run(["migration-key", file], timeout: 30)
        #expect(made.status == 0, "stderr: \(made.stderr)")
        #expect(made.stdout.contains(file))
        var st = stat()
        #expect(stat(file, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.count == 65 && text.hasSuffix("\n"))
        #expect(text.dropLast().allSatisfy { $0.isHexDigit && !$0.isUppercase })

        // A second key into the same file would break the copy on the other host.
        let again = try SkiffProcess.run(["migration-key", file], timeout: 30)
        #expect(again.status == 1)
        #expect(again.stderr.hasPrefix("skiff: error:"))
        #expect(again.stderr.contains("already exists"), "stderr: \(again.stderr)")
        #expect(try String(contentsOfFile: file, encoding: .utf8) == text)

        // Two keys made independently differ.
        let other = dir.appendingPathComponent("other.key").path
        #expect(try SkiffProcess.run(["migration-key", other], timeout: 30).status == 0)
        #expect(try String(contentsOfFile: other, encoding: .utf8) != text)

        let missing = try SkiffProcess.run(["migration-key"], timeout: 30)
        #expect(missing.status == 2)
    }
}
