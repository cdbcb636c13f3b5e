#if canImport(Glibc)
import Glibc
#endif

/// Puts the controlling terminal in raw mode while a guest owns the console, and
/// puts it back on every way out: normal return, error, and fatal signals.
enum Terminal {
    /// The settings to restore; written once before any handler can read it.
    nonisolated(unsafe) private static var saved = termios()
    nonisolated(unsafe) private static var isRaw = false

    /// Switches stdin to raw mode if it is a terminal. Returns false otherwise.
    @discardableResult
    static func enterRawMode() -> Bool {
        guard isatty(STDIN_FILENO) == 1, tcgetattr(STDIN_FILENO, &saved) == 0 else { return false }
        var raw = saved
        cfmakeraw(&raw)
        raw.c_oflag |= tcflag_t(OPOST | ONLCR)  // keep "\n" → "\r\n" for host-side messages
        guard tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0 else { return false }
        isRaw = true
        atexit { Terminal.restore() }
        return true
    }

    /// Termination signals end skiff at once (restoring the terminal first).
    /// Installed explicitly because a parent may have left them ignored, and an
    /// ignored SIGTERM would make a VM unkillable short of SIGKILL.
    static func installTerminationHandlers() {
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in [SIGTERM, SIGHUP, SIGQUIT, SIGINT] { sigaddset(&unblock, signal) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)  // masks are inherited too
        for signal in [SIGTERM, SIGHUP, SIGQUIT, SIGINT] {
            Glibc.signal(signal) { number in
                Terminal.restore()
                _exit(128 + number)
            }
        }
        Glibc.signal(SIGPIPE, SIG_IGN)  // a closed stdout must not kill the VM mid-write
    }

    /// Async-signal-safe: only tcsetattr.
    static func restore() {
        guard isRaw else { return }
        isRaw = false
        tcsetattr(STDIN_FILENO, TCSANOW, &saved)
    }
}
