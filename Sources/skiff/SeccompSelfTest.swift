import Seccomp
import SkiffCLI
#if canImport(Glibc)
import Glibc
#endif

/// `skiff seccomp-self-test --role ROLE`: a hidden command for the test suite. It
/// compiles ROLE's filter and loads it on this thread, proves an allowed call still works, then
/// makes a call no filter allows (listen(2): the API socket listens before any filter), which must end the
/// process with "skiff: seccomp: thread ROLE made forbidden system call listen (50)"
/// and status 159. A guest cannot make the VMM issue a system call of its choosing,
/// so this is how a test sees the filter bite.
struct SeccompSelfTest {
    static let command = Command(
        name: "seccomp-self-test", abstract: "Check that a seccomp role's filter kills a forbidden call.",
        options: [.option("role", default: "vcpu", help: "The role whose filter to load: vcpu, events, api, main.")],
        isHidden: true,
        run: { try SeccompSelfTest(role: $0.string("role")!).run() })

    var role: String

    func run() throws {
        guard let role = SeccompRole(rawValue: role) else { throw ValidationError("unknown role '\(role)'") }
        // Compiled first, as `skiff run` does, so the program it loads is the one tested.
        try SeccompFilter.prepare([role], mode: .on)
        let start = ContinuousClock.now
        try SeccompFilter.install(role, mode: .on)
        let elapsed = ContinuousClock.now - start
        let line = "seccomp-self-test: \(role) filter loaded in \(elapsed)\n"
        _ = line.withCString { write(STDOUT_FILENO, $0, strlen($0)) }  // allowed in every role
        let result = listen(-1, 1)    // allowed in none: the handler ends us here
        printError("seccomp-self-test: listen() returned \(result): the \(role) filter did not bite")
        throw ExitCode(1)
    }
}
