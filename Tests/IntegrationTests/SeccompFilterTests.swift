import Foundation
import Testing

/// `skiff run` filters every thread's system calls by default (`--seccomp on`), and
/// a call outside a role's allow-list ends the process with a line naming the role
/// and the call. The rest of IntegrationTests runs with the filters on, so every
/// guest, API, snapshot and teardown test also checks the allow-lists are complete.
/// Sanitized runs (`scripts/sanitize.sh`) start skiff with `--seccomp log` instead
/// (SKIFF_TEST_SECCOMP): TSan's runtime makes calls the filters refuse.
@Suite(.disabled(if: ProcessInfo.processInfo.environment["SKIFF_TEST_SECCOMP"] != nil,
                 "SKIFF_TEST_SECCOMP is set (a sanitized run): skiff runs with that --seccomp mode, not the default filters"))
struct SeccompFilterTests {
    /// A guest cannot make the VMM issue a system call of its choosing, so the
    /// hidden `seccomp-self-test` command loads a role's filter and calls listen(2).
    @Test(arguments: ["vcpu", "events", "diskIO", "api", "main"])
    func forbiddenCallEndsTheProcessNamingIt(role: String) throws {
        let run = try SkiffProcess.run(["seccomp-self-test", "--role", role], timeout: 30)
        #expect(run.stdout.contains("seccomp-self-test: \(role) filter loaded"), "stdout: \(run.stdout)")
        #expect(run.status == 159, "status \(run.status), stderr: \(run.stderr)")  // 128 + SIGSYS
        #expect(run.stderr == "skiff: seccomp: thread \(role) made forbidden system call listen (50)\n",
                "stderr: \(run.stderr)")
    }

    /// Seccomp mode and filter count of each thread of `pid`, by thread name.
    static func threadFilters(_ pid: Int32) -> [(name: String, mode: Int, filters: Int, isMain: Bool)] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { tid in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/status", encoding: .utf8) else { return nil }
            func field(_ key: String) -> String? {
                status.split(separator: "\n").first { $0.hasPrefix(key + ":") }
                    .map { $0.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces) }
            }
            return (field("Name") ?? "?", Int(field("Seccomp") ?? "") ?? -1, Int(field("Seccomp_filters") ?? "") ?? -1,
                    tid == "\(pid)")
        }
    }

    @Test func everyThreadIsFilteredByDefault() throws {
        let dir = try Shell.temporaryDirectory("seccomp-on")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let disk = dir.appendingPathComponent("disk.raw").path
        try Shell.run("truncate -s 1M \(disk)")
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("count"), "--memory", "64M", "--cpus", "2",
                                   "--cmdline", "count.every=2000000", "--api-socket", socket, "--disk", "path=\(disk)"])
        #expect(vm.waitForCounts(2, timeout: 60), "stderr: \(vm.errors.text)")
        let threads = Self.threadFilters(vm.process.processIdentifier)
        kill(vm.process.processIdentifier, SIGTERM)
        #expect(vm.waitForExit(timeout: 60) == 128 + SIGTERM, "stderr: \(vm.errors.text)")
        #expect(threads.count >= 9, "\(threads)")  // main, NIO, events, 2 vCPUs, 4 disk I/O
        for t in threads {
            #expect(t.mode == 2, "thread \(t.name) is not filtered: \(threads)")  // SECCOMP_MODE_FILTER
        }
        // The baseline everywhere, and the role's own filter on top where skiff or NIO made the thread.
        let named = { (prefix: String) in threads.filter { $0.name.hasPrefix(prefix) } }
        #expect(named("skiff-vcpu").count == 2)
        #expect(named("skiff-events").count == 1)
        #expect(named("NIO-ELT").count == 1)
        #expect(named("skiff-disk-io").count == 4, "\(threads)")  // the disk's I/O threads, started before the guest runs
        for t in named("skiff-vcpu") + named("skiff-events") + named("NIO-ELT") + named("skiff-disk-io") {
            #expect(t.filters >= 2, "\(t.name) has only the baseline: \(threads)")
        }
        #expect(threads.first(where: \.isMain)?.filters == 1, "\(threads)")  // main keeps the baseline (vm.reboot)
    }

    @Test func offLeavesThreadsUnfiltered() throws {
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("count"), "--memory", "64M",
                                   "--cmdline", "count.every=2000000", "--seccomp", "off"])
        #expect(vm.waitForCounts(2, timeout: 60), "stderr: \(vm.errors.text)")
        let threads = Self.threadFilters(vm.process.processIdentifier)
        kill(vm.process.processIdentifier, SIGTERM)
        #expect(vm.waitForExit(timeout: 60) == 128 + SIGTERM)
        #expect(!threads.isEmpty)
        for t in threads { #expect(t.mode == 0, "\(threads)") }
    }

    /// Without the API nothing builds another VM in this process, so the main thread
    /// narrows to the `main` role too; a teardown by SIGTERM then still completes.
    @Test func mainThreadIsNarrowedWithoutTheAPI() throws {
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("count"), "--memory", "64M",
                                   "--cmdline", "count.every=2000000"])
        #expect(vm.waitForCounts(2, timeout: 60), "stderr: \(vm.errors.text)")
        let threads = Self.threadFilters(vm.process.processIdentifier)
        kill(vm.process.processIdentifier, SIGTERM)
        #expect(vm.waitForExit(timeout: 60) == 128 + SIGTERM, "stderr: \(vm.errors.text)")
        #expect(threads.first(where: \.isMain)?.filters == 2, "\(threads)")
        #expect(!vm.errors.text.contains("seccomp"), "stderr: \(vm.errors.text)")
    }

    /// `vm.reboot` builds a whole new VM on the main thread under the baseline, and its
    /// new threads load their roles on top; snapshot and shutdown then still work.
    @Test func rebootAndSnapshotWorkUnderTheFilters() throws {
        let dir = try Shell.temporaryDirectory("seccomp-reboot")
        defer { try? FileManager.default.removeItem(at: dir) }
        let socket = dir.appendingPathComponent("vm.sock").path
        let vm = try BackgroundVM(["run", "--kernel", try Firmware.path("count"), "--memory", "64M", "--cpus", "2",
                                   "--cmdline", "count.every=2000000", "--api-socket", socket])
        #expect(vm.waitForCounts(2, timeout: 60), "stderr: \(vm.errors.text)")
        let reboot = try SkiffProcess.run(["reboot", "--api-socket", socket], timeout: 30)
        #expect(reboot.status == 0, "\(reboot.stderr)")
        let deadline = Date().addingTimeInterval(60)
        while vm.output.text.components(separatedBy: "count: start").count < 3 && Date() < deadline { usleep(20_000) }
        #expect(vm.output.text.components(separatedBy: "count: start").count == 3, "no second boot: \(vm.output.text)")
        let snapshot = try SkiffProcess.run(["snapshot", "--api-socket", socket, dir.appendingPathComponent("snap").path],
                                            timeout: 60)
        #expect(snapshot.status == 0, "\(snapshot.stderr)")
        let shutdown = try SkiffProcess.run(["shutdown", "--api-socket", socket], timeout: 30)
        #expect(shutdown.status == 0, "\(shutdown.stderr)")
        #expect(vm.waitForExit(timeout: 60) == 0, "stderr: \(vm.errors.text)")
        #expect(!vm.errors.text.contains("seccomp"), "stderr: \(vm.errors.text)")
    }

    @Test func badValueIsRefused() throws {
        let run = try SkiffProcess.run(["run", "--kernel", "/etc/hostname", "--seccomp", "maybe"], timeout: 30)
        #expect(run.status == 2)
        #expect(run.stderr.contains("invalid --seccomp 'maybe': give on or off"), "stderr: \(run.stderr)")
    }
}
