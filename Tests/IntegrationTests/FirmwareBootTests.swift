import Foundation
import Testing

/// `skiff run` on /dev/kvm with the project's own test guests.
@Suite(.enabled(if: Host.kvmUsable, "needs read/write access to /dev/kvm"), .serialized)
struct FirmwareBootTests {
    @Test(arguments: [1, 2])
    func helloPrintsAndPowersOff(cpus: Int) throws {
        let run = try SkiffProcess.run(["run", "--kernel", try Firmware.path("hello"), "--memory", "64M",
                                        "--cpus", "\(cpus)"], timeout: 60)
        #expect(!run.timedOut)
        #expect(run.status == 0, "stderr: \(run.stderr)")
        #expect(run.lines.contains("Hello from Skiff firmware"))
    }

    @Test func countCarriesOnAndStopsAtItsLimit() throws {
        let every = 50_000_000
        let run = try SkiffProcess.run(["run", "--kernel", try Firmware.path("count"), "--memory", "64M",
                                        "--cmdline", "count.every=\(every) count.limit=6"], timeout: 120)
        #expect(!run.timedOut)
        #expect(run.status == 0, "stderr: \(run.stderr)")
        // Six lines, strictly consecutive multiples of `every`: no gaps, no repeats.
        let counts = run.lines.filter { $0.hasPrefix("count ") }.compactMap { Int($0.dropFirst(6)) }
        #expect(counts == (1...6).map { $0 * every })
        #expect(run.lines.contains("count: done"))
    }

    @Test func guestOutputKeepsOrderUnderTwoCPUs() throws {
        let run = try SkiffProcess.run(["run", "--kernel", try Firmware.path("count"), "--memory", "64M", "--cpus", "2",
                                        "--cmdline", "count.every=10000000 count.limit=3"], timeout: 120)
        #expect(run.status == 0, "stderr: \(run.stderr)")
        let counts = run.lines.filter { $0.hasPrefix("count ") }.compactMap { Int($0.dropFirst(6)) }
        #expect(counts == [10_000_000, 20_000_000, 30_000_000])
    }
}
