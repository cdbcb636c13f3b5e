import Foundation

/// A pseudo-terminal pair, standing in for a user's terminal: a child gets the
/// slave as stdin/stdout/stderr (sharing its open file description, as a shell's
/// children do), the test types into and reads from the master.
final class PseudoTerminal {
    struct Failed: Error, CustomStringConvertible {
        let call: String
        let code: Int32
        var description: String { "\(call) failed: \(String(cString: strerror(code)))" }
    }

    let master: Int32
    let slave: Int32

    // Linux ioctls (Swift's Glibc hides posix_openpt and friends): unlock the
    // pair, then open the slave through the master.
    private static let TIOCSPTLCK: UInt = 0x4004_5431
    private static let TIOCGPTPEER: UInt = 0x5441

    init() throws {
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard master >= 0 else { throw Failed(call: "open(/dev/ptmx)", code: errno) }
        var unlock: Int32 = 0
        guard ioctl(master, PseudoTerminal.TIOCSPTLCK, &unlock) == 0 else {
            let code = errno
            close(master)
            throw Failed(call: "ioctl(TIOCSPTLCK)", code: code)
        }
        slave = ioctl(master, PseudoTerminal.TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard slave >= 0 else {
            let code = errno
            close(master)
            throw Failed(call: "ioctl(TIOCGPTPEER)", code: code)
        }
    }

    deinit {
        close(slave)
        close(master)
    }

    /// What a child gets as stdin, stdout and stderr: the slave's own description.
    var slaveHandle: FileHandle { FileHandle(fileDescriptor: slave, closeOnDealloc: false) }

    /// The terminal's settings as every user of the slave sees them.
    func settings() throws -> termios {
        var t = termios()
        guard tcgetattr(slave, &t) == 0 else { throw Failed(call: "tcgetattr", code: errno) }
        return t
    }

    /// The slave description's file status flags (O_NONBLOCK and friends).
    func statusFlags() throws -> Int32 {
        let flags = fcntl(slave, F_GETFL)
        guard flags >= 0 else { throw Failed(call: "fcntl(F_GETFL)", code: errno) }
        return flags
    }

    /// Types `bytes` as a user would.
    func type(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Failed(call: "write(master)", code: errno) }
            offset += n
        }
    }

    func type(_ text: String) throws { try type(Array(text.utf8)) }

    static func sameSettings(_ a: termios, _ b: termios) -> Bool {
        var a = a, b = b
        return withUnsafeBytes(of: &a) { x in withUnsafeBytes(of: &b) { y in x.elementsEqual(y) } }
    }

    static func isRaw(_ t: termios) -> Bool {
        t.c_lflag & tcflag_t(ICANON | ECHO | ISIG) == 0
    }
}
