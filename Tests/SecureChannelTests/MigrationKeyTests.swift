import Foundation
import Testing
@testable import SecureChannel

/// Key files: made with mode 0600 and never overwritten; loading refuses files
/// others can access, other lengths and bad hex, naming the file.
@Suite struct MigrationKeyTests {
    let dir: URL

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("skiff-key-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func write(_ text: String, to name: String, mode: mode_t = 0o600) throws -> String {
        let p = path(name)
        try text.write(toFile: p, atomically: false, encoding: .utf8)
        chmod(p, mode)
        return p
    }

    @Test func createWritesOneHexLineWithMode0600AndLoadReadsItBack() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = path("k")
        let key = try MigrationKey.create(at: p)
        var st = stat()
        #expect(stat(p, &st) == 0 && st.st_mode & 0o7777 == 0o600)
        #expect(try String(contentsOfFile: p, encoding: .utf8) == key.fileContents)
        #expect(try MigrationKey.load(from: p) == key)
        #expect(!"\(key)".contains(String(key.fileContents.prefix(8))), "description must not show the key")
    }

    @Test func createNeverOverwrites() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = try write("keep me\n", to: "existing")
        #expect(throws: MigrationKeyError(path: p, problem: .exists)) { try MigrationKey.create(at: p) }
        #expect(try String(contentsOfFile: p, encoding: .utf8) == "keep me\n")
        // Nor through a symlink to somewhere else.
        let link = path("link")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path("target"))
        #expect(throws: MigrationKeyError.self) { try MigrationKey.create(at: link) }
        #expect(!FileManager.default.fileExists(atPath: path("target")))
    }

    @Test func generatedKeysDiffer() {
        #expect(MigrationKey.generate() != MigrationKey.generate())
    }

    @Test func loadAcceptsUpperCaseAndSurroundingWhitespace() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = MigrationKey.generate()
        let p = try write("  " + key.fileContents.dropLast().uppercased() + "\r\n\n", to: "k")
        #expect(try MigrationKey.load(from: p) == key)
    }

    @Test(arguments: [0o640, 0o604, 0o660, 0o644, 0o700 | 0o070, 0o602, 0o620])
    func loadRefusesAFileOthersCanAccess(mode: Int) throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = try write(MigrationKey.generate().fileContents, to: "k", mode: mode_t(mode))
        let error = #expect(throws: MigrationKeyError.self) { try MigrationKey.load(from: p) }
        #expect(error?.problem == .tooOpen(mode: UInt32(mode)))
        #expect(error?.description.contains("chmod 600") == true)
    }

    @Test func loadAcceptsOwnerOnlyModes() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        for mode: mode_t in [0o400, 0o600] {
            let p = try write(MigrationKey.generate().fileContents, to: "k\(mode)", mode: mode)
            _ = try MigrationKey.load(from: p)
        }
    }

    @Test(arguments: [
        ("", "found 0 characters"),
        (String(repeating: "a", count: 63), "found 63 characters"),
        (String(repeating: "a", count: 66), "found 66 characters"),
        (String(repeating: "a", count: 63) + "g", "character 64 is not a hex digit"),
        (String(repeating: "ab", count: 16) + " " + String(repeating: "ab", count: 16), "found 65 characters"),
        (String(repeating: "é", count: 32), "not a hex digit"),
    ])
    func loadRefusesMalformedText(text: String, message: String) throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = try write(text, to: "k")
        let error = #expect(throws: MigrationKeyError.self) { try MigrationKey.load(from: p) }
        #expect(error?.description.contains(message) == true, "\(String(describing: error))")
        #expect(error?.description.contains(p) == true)
    }

    @Test func loadRefusesHugeFilesDirectoriesAndMissingFiles() throws {
        defer { try? FileManager.default.removeItem(at: dir) }
        let big = try write(String(repeating: "0", count: 10_000), to: "big")
        #expect(throws: MigrationKeyError.self) { try MigrationKey.load(from: big) }
        let sub = path("sub")
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: false)
        chmod(sub, 0o700)
        #expect(throws: MigrationKeyError(path: sub, problem: .notRegularFile)) { try MigrationKey.load(from: sub) }
        let missing = #expect(throws: MigrationKeyError.self) { try MigrationKey.load(from: path("none")) }
        #expect(missing?.description.contains("No such file") == true)
    }
}
