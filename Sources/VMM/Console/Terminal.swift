#if canImport(Glibc)
import Glibc
#endif

/// Puts the controlling terminal in raw mode while a guest owns the console, and
/// puts it back on every way out: normal return, error, and fatal signals.
enum Terminal {
    /// The settings to restore; written once before any handler can read it.
    nonisolated(unsafe) private static var saved = termios()  // Sound because: written once by `enterRawMode` (main thread) before the handlers that read it exist.
    nonisolated(unsafe) private static var isRaw = false  // Sound because: as `saved`; only the main thread and the exit/crash handlers read it.

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
        installCrashHandlers()  // a crash must not leave the terminal raw either
        return true
    }

    /// From now on termination signals end skiff at once (restoring the terminal
    /// first). Used after a first termination signal started the orderly
    /// teardown (`TerminationSignals`), in case that teardown hangs.
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

    static let crashSignals = [SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT]
    /// The actions in place before ours (Swift's backtracer, or the default), indexed by
    /// signal number (1–31).
    nonisolated(unsafe) private static var previous: UnsafeMutablePointer<sigaction>?  // Sound because: set once, before the handlers that read it are installed.

    /// A crash (a Swift trap, a fault) must not leave the user's terminal raw either.
    /// Our handler restores the terminal, puts the previous action back and lets it run,
    /// so backtraces and core dumps work as before. Installed once.
    private static func installCrashHandlers() {
        guard previous == nil else { return }
        let saved = UnsafeMutablePointer<sigaction>.allocate(capacity: 32)
        saved.initialize(repeating: sigaction(), count: 32)
        previous = saved
        var action = sigaction()
        action.__sigaction_handler.sa_sigaction = { number, info, _ in Terminal.crashed(number, info) }
        action.sa_flags = SA_SIGINFO | SA_ONSTACK
        sigemptyset(&action.sa_mask)
        for signal in crashSignals { sigaction(signal, &action, saved + Int(signal)) }
    }

    /// Async-signal-safe. A fault the kernel raised (si_code > 0) happens again when
    /// we return, now under the previous action; a sent one (kill, abort) is re-raised.
    private static func crashed(_ number: Int32, _ info: UnsafeMutablePointer<siginfo_t>?) {
        restore()
        guard let previous else { return }
        sigaction(number, previous + Int(number), nil)
        if (info?.pointee.si_code ?? 0) <= 0 { raise(number) }
    }

    /// Async-signal-safe: only tcsetattr.
    static func restore() {
        guard isRaw else { return }
        isRaw = false
        tcsetattr(STDIN_FILENO, TCSANOW, &saved)
    }
}
