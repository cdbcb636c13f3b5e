import Posix

/// Why a migration key file could not be made or used; the message names the
/// file and says what to do.
public struct MigrationKeyError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Problem: Error, Equatable, Sendable {
        case exists
        case notRegularFile
        /// Group or others have some access; the mode is given.
        case tooOpen(mode: UInt32)
        case malformed(String)
        case system(SystemCallError)
    }

    public let path: String
    public let problem: Problem

    public init(path: String, problem: Problem) {
        self.path = path
        self.problem = problem
    }

    public var description: String {
        switch problem {
        case .exists:
            return "migration key file '\(path)' already exists; a key is never overwritten (remove the file first to make a new one)"
        case .notRegularFile:
            return "migration key file '\(path)' is not a regular file"
        case .tooOpen(let mode):
            return "migration key file '\(path)' has permissions \(String(mode, radix: 8)), readable or writable by others; "
                + "it must be accessible by its owner only (chmod 600 '\(path)')"
        case .malformed(let why):
            return "migration key file '\(path)' is not a key made by `skiff migration-key`: \(why)"
        case .system(let e):
            return "migration key file '\(path)': \(e)"
        }
    }
}
