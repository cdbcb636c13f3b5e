#if canImport(Glibc)
import Glibc
#endif

/// Writes diagnostics to file descriptor 2. C's global `stderr` is a mutable global,
/// which Swift 6 refuses to read from concurrent code; a plain write(2) needs no shared state.
public enum StandardError {
    /// Writes `text` whole (retrying short writes and EINTR); errors are dropped, as fputs's would be.
    public static func write(_ text: String) {
        var bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + done, $0.count - done) }
            if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { return }
        }
    }
}
