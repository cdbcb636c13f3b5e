import Foundation
import Testing

/// The serial console as a user drives it: `skiff run` on a real pseudo-terminal
/// (typing, Ctrl-A x, SIGTERM, and the terminal left as it was), and on a pipe
/// (input delivered, then EOF without spinning). The guest is firmware/echo.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"), .serialized)
struct ConsoleTests {
    static let bootTimeout = 60.0

    @Test func typedLineReachesTheGuestAndCtrlAXQuitsRestoringTheTerminal() throws {
        let pty = try PseudoTerminal()
        let settingsBefore = try pty.settings(), flagsBefore = try pty.statusFlags()
        #expect(!PseudoTerminal.isRaw(settingsBefore))
        let out = OutputWatcher(fd: pty.master)
        defer { out.stop() }
        let skiff = try launchEcho(stdin: pty.slaveHandle, stdout: pty.slaveHandle, stderr: pty.slaveHandle)
        defer { ensureGone(skiff) }

        try #require(out.waitFor("echo: ready", timeout: Self.bootTimeout), "output: \(out.text)")
        #expect(PseudoTerminal.isRaw(try pty.settings()), "the guest owns the terminal: raw mode")
        try pty.type("hello pty\r")
        #expect(out.waitFor("echo: HELLO PTY", timeout: 20), "output: \(out.text)")
        #expect(!out.text.contains("hello pty"), "raw mode: the terminal itself must not echo")

        try pty.type([0x01, UInt8(ascii: "x")])  // Ctrl-A x
        try #require(waitForExit(skiff, timeout: 20), "Ctrl-A x did not end skiff; output: \(out.text)")
        #expect(skiff.terminationReason == .exit && skiff.terminationStatus == 0)
        #expect(PseudoTerminal.sameSettings(try pty.settings(), settingsBefore), "terminal mode not restored")
        let flagsAfter = try pty.statusFlags()
        #expect(flagsAfter == flagsBefore && flagsAfter & O_NONBLOCK == 0, "flags \(flagsBefore) → \(flagsAfter)")
    }

    @Test func sigtermRestoresTheTerminal() throws {
        let pty = try PseudoTerminal()
        let settingsBefore = try pty.settings(), flagsBefore = try pty.statusFlags()
        let out = OutputWatcher(fd: pty.master)
        defer { out.stop() }
        let skiff = try launchEcho(stdin: pty.slaveHandle, stdout: pty.slaveHandle, stderr: pty.slaveHandle)
        defer { ensureGone(skiff) }

        try #require(out.waitFor("echo: ready", timeout: Self.bootTimeout), "output: \(out.text)")
        #expect(PseudoTerminal.isRaw(try pty.settings()))
        kill(skiff.processIdentifier, SIGTERM)
        try #require(waitForExit(skiff, timeout: 20), "SIGTERM did not end skiff")
        #expect(skiff.terminationReason == .exit && skiff.terminationStatus == 128 + SIGTERM)
        #expect(PseudoTerminal.sameSettings(try pty.settings(), settingsBefore), "terminal mode not restored")
        let flagsAfter = try pty.statusFlags()
        #expect(flagsAfter == flagsBefore && flagsAfter & O_NONBLOCK == 0, "flags \(flagsBefore) → \(flagsAfter)")
    }

    /// A crash must not leave the terminal raw either, and must still end skiff by
    /// its signal. Swift's backtracer is off here: after a backtrace it returns to
    /// let a real fault happen again, which a signal sent with kill() never does.
    @Test func crashSignalRestoresTheTerminal() throws {
        let pty = try PseudoTerminal()
        let settingsBefore = try pty.settings()
        let out = OutputWatcher(fd: pty.master)
        defer { out.stop() }
        let skiff = try launchEcho(stdin: pty.slaveHandle, stdout: pty.slaveHandle, stderr: pty.slaveHandle,
                                   environment: ["SWIFT_BACKTRACE": "enable=no"])
        defer { ensureGone(skiff) }

        try #require(out.waitFor("echo: ready", timeout: Self.bootTimeout), "output: \(out.text)")
        #expect(PseudoTerminal.isRaw(try pty.settings()))
        kill(skiff.processIdentifier, SIGSEGV)
        try #require(waitForExit(skiff, timeout: 20), "SIGSEGV did not end skiff; output: \(out.text)")
        #expect(skiff.terminationReason == .uncaughtSignal && skiff.terminationStatus == SIGSEGV,
                "\(skiff.terminationReason) \(skiff.terminationStatus); output: \(out.text)")
        #expect(PseudoTerminal.sameSettings(try pty.settings(), settingsBefore), "terminal mode not restored")
    }

    @Test func pipedInputReachesTheGuestAndEOFCostsNoCPU() throws {
        var input = try pipePair()
        let output = try pipePair()
        defer { for fd in [input.read, input.write, output.read, output.write] where fd >= 0 { close(fd) } }
        let flagsBefore = fcntl(input.read, F_GETFL)
        let out = OutputWatcher(fd: output.read)
        defer { out.stop() }
        let skiff = try launchEcho(stdin: FileHandle(fileDescriptor: input.read, closeOnDealloc: false),
                                   stdout: FileHandle(fileDescriptor: output.write, closeOnDealloc: false),
                                   stderr: FileHandle(fileDescriptor: output.write, closeOnDealloc: false))
        defer { ensureGone(skiff) }

        try #require(out.waitFor("echo: ready", timeout: Self.bootTimeout), "output: \(out.text)")
        try send("hello pipe\n", to: input.write)
        #expect(out.waitFor("echo: HELLO PIPE", timeout: 20), "output: \(out.text)")
        // The guest idles 3 s in HLT, then reads "q" (already in its UART FIFO) and powers off.
        try send("sleep 3\nq\n", to: input.write)
        #expect(out.waitFor("echo: SLEEP 3", timeout: 20), "output: \(out.text)")
        close(input.write)  // EOF for skiff
        input.write = -1

        usleep(300_000)  // let skiff see the EOF
        let cpuBefore = try cpuSeconds(skiff.processIdentifier)
        usleep(1_000_000)
        let cpuUsed = try cpuSeconds(skiff.processIdentifier) - cpuBefore
        #expect(cpuUsed < 0.15, "skiff used \(cpuUsed) s of CPU in 1 s with stdin at EOF and the guest idle")

        try #require(waitForExit(skiff, timeout: 30), "the guest did not power off; output: \(out.text)")
        #expect(skiff.terminationReason == .exit && skiff.terminationStatus == 0)
        #expect(out.text.contains("echo: bye"))
        #expect(fcntl(input.read, F_GETFL) == flagsBefore, "stdin's file status flags changed")
    }

    /// A parent may hand skiff a non-blocking stdout (the flag is on the shared
    /// file description); a full pipe then answers EAGAIN, and guest output must
    /// wait for room, not be dropped.
    @Test func guestOutputIsNotDroppedWhenStdoutIsNonBlocking() throws {
        let output = try pipePair()
        defer { close(output.read); close(output.write) }
        _ = fcntl(output.write, F_SETFL, fcntl(output.write, F_GETFL) | O_NONBLOCK)
        let capacity = fcntl(output.write, 1031 /* F_SETPIPE_SZ */, 4096)  // small: it fills fast
        try #require(capacity > 0)
        let devNull = try #require(FileHandle(forReadingAtPath: "/dev/null"))
        let lines = 3000, every = 1000
        let skiff = try launch(firmware: "count", ["--cmdline", "count.every=\(every) count.limit=\(lines)"],
                               stdin: devNull, stdout: FileHandle(fileDescriptor: output.write, closeOnDealloc: false),
                               stderr: FileHandle(fileDescriptor: output.write, closeOnDealloc: false))
        defer { ensureGone(skiff) }
        // Not reading yet: once the pipe is full skiff meets EAGAIN; give it a while there.
        var queued: Int32 = 0
        let deadline = Date().addingTimeInterval(60)
        while queued < capacity && Date() < deadline && skiff.isRunning {
            usleep(10_000)
            _ = ioctl(output.read, 0x541B /* FIONREAD */, &queued)
        }
        #expect(queued == capacity, "the pipe never filled")
        usleep(500_000)
        let out = OutputWatcher(fd: output.read)
        defer { out.stop() }

        try #require(waitForExit(skiff, timeout: 240), "count did not finish")
        #expect(skiff.terminationReason == .exit && skiff.terminationStatus == 0)
        #expect(out.waitFor("count: done", timeout: 10))
        let counts = out.text.split(separator: "\n").filter { $0.hasPrefix("count ") }.compactMap { Int($0.dropFirst(6)) }
        let intact = counts == (1...lines).map { $0 * every }
        #expect(intact, "\(counts.count) of \(lines) lines arrived intact")
    }

    // MARK: - Helpers

    private func launchEcho(stdin: FileHandle, stdout: FileHandle, stderr: FileHandle,
                            environment: [String: String] = [:]) throws -> Process {
        try launch(firmware: "echo", [], stdin: stdin, stdout: stdout, stderr: stderr, environment: environment)
    }

    private func launch(firmware: String, _ arguments: [String], stdin: FileHandle, stdout: FileHandle,
                        stderr: FileHandle, environment: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.executableURL = SkiffProcess.binary
        process.arguments = ["run", "--kernel", try Firmware.path(firmware), "--memory", "64M"] + arguments
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        return process
    }

    private func waitForExit(_ process: Process, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return !process.isRunning
    }

    /// A test that failed half-way must not leave a VM running.
    private func ensureGone(_ process: Process) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// A pipe whose ends do not leak into the child (only its dup onto stdin does),
    /// so closing `write` here really is EOF for skiff.
    private func pipePair() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw PseudoTerminal.Failed(call: "pipe", code: errno) }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    private func send(_ text: String, to fd: Int32) throws {
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw PseudoTerminal.Failed(call: "write(pipe)", code: errno)
        }
    }

    /// User + system CPU time of `pid` so far, from /proc/PID/stat.
    private func cpuSeconds(_ pid: Int32) throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after "(comm) ": state is field 3, utime 14, stime 15.
        guard let end = stat.lastIndex(of: ")") else { throw PseudoTerminal.Failed(call: "parse stat", code: 0) }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
            throw PseudoTerminal.Failed(call: "parse stat", code: 0)
        }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
