import CSeccomp
import Seccomp
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The compiled BPF programs, run in an interpreter: for every role and mode, every
/// system call number, x32 and foreign-architecture calls and ioctl arguments get
/// exactly the action their allow-list means (`AllowListMeaning`).
final class SeccompProgramTests: XCTestCase {
    /// A call's number, from the table (`SyscallTableTests` checks it).
    private func nr(_ name: String) -> UInt32 {
        UInt32(cseccomp_syscall_number(name))
    }

    private func assertProgram(_ program: [sock_filter], means list: SeccompAllowList, mode: SeccompMode,
                               calls: [SeccompCall], _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        try BPFInterpreter.check(program)
        var wrong = 0
        for call in calls {
            let got = try BPFInterpreter.run(program, on: call).action
            let expected = AllowListMeaning.action(list, mode: mode, for: call)
            if got != expected {
                wrong += 1
                if wrong <= 10 {
                    XCTFail("\(what): nr \(call.nr) arch 0x\(String(call.arch, radix: 16)) args \(call.args.prefix(2).map { String($0, radix: 16) }): " +
                            "0x\(String(got, radix: 16)), expected 0x\(String(expected, radix: 16))", file: file, line: line)
                }
            }
        }
        XCTAssertEqual(wrong, 0, "\(what): \(wrong) of \(calls.count) calls decided wrongly", file: file, line: line)
    }

    func testEveryRoleDecidesEveryCallAsItsListSays() throws {
        let lists = SeccompRole.allCases.map(SeccompAllowList.forRole)
        let calls = AllowListMeaning.calls(lists)
        XCTAssertGreaterThan(calls.count, 1000)
        for role in SeccompRole.allCases {
            for mode in [SeccompMode.on, .log] {
                let program = try SeccompFilter.program(role, mode: mode)
                try assertProgram(program, means: SeccompAllowList.forRole(role), mode: mode, calls: calls, "\(role) \(mode)")
            }
        }
    }

    /// The actions themselves, spelled out for one role, so that a mistake shared by
    /// the compiler and `AllowListMeaning` still shows.
    func testVCPUProgramByHand() throws {
        let program = try SeccompFilter.program(.vcpu, mode: .on)
        func action(_ nr: UInt32, arch: UInt32 = CSECCOMP_AUDIT_ARCH_X86_64, _ a0: UInt64 = 0, _ a1: UInt64 = 0) throws -> UInt32 {
            try BPFInterpreter.run(program, on: SeccompCall(nr: nr, arch: arch, args: [a0, a1, 0, 0, 0, 0])).action
        }
        let allow: UInt32 = 0x7FFF_0000, trap: UInt32 = 0x0003_0000, eacces: UInt32 = 0x0005_000D, kill: UInt32 = 0
        XCTAssertEqual(try action(nr("write")), allow)
        XCTAssertEqual(try action(nr("futex")), allow)
        XCTAssertEqual(try action(nr("openat")), eacces)
        XCTAssertEqual(try action(nr("open")), eacces)
        XCTAssertEqual(try action(nr("listen")), trap)
        XCTAssertEqual(try action(nr("execve")), trap)
        XCTAssertEqual(try action(nr("ioctl"), 9, 0xAE80), allow)                 // KVM_RUN on any descriptor
        XCTAssertEqual(try action(nr("ioctl"), 9, 0x1_0000_AE80), allow)          // upper half: not the kernel's cmd
        XCTAssertEqual(try action(nr("ioctl"), 9, 0xAE01), trap)                  // KVM_CREATE_VM
        XCTAssertEqual(try action(nr("ioctl"), 0, UInt64(TCSETS)), allow)          // the terminal on stdin
        XCTAssertEqual(try action(nr("ioctl"), 0, 0xFFFF_FFFF_0000_0000 | UInt64(TCSETS)), allow)
        XCTAssertEqual(try action(nr("ioctl"), 3, UInt64(TCSETS)), trap)           // … on another descriptor
        XCTAssertEqual(try action(nr("ioctl"), 0x1_0000_0000, UInt64(TCSETS)), trap)  // descriptor: all 64 bits
        XCTAssertEqual(try action(0x4000_0000 | nr("write")), kill)                // x32
        XCTAssertEqual(try action(UInt32.max), trap)                                     // −1, skipped by a tracer
        XCTAssertEqual(try action(nr("write"), arch: 0x4000_0003), kill)           // i386
    }

    func testLogModeLogsInsteadOfTrapping() throws {
        let program = try SeccompFilter.program(.diskIO, mode: .log)
        XCTAssertEqual(try BPFInterpreter.run(program, on: SeccompCall(nr: nr("listen"))).action, 0x7FFC_0000)
        XCTAssertEqual(try BPFInterpreter.run(program, on: SeccompCall(nr: nr("preadv"))).action, 0x7FFF_0000)
    }

    /// A binary search: a call costs a few instructions, whatever its number.
    func testEveryCallIsDecidedInFewInstructions() throws {
        for role in SeccompRole.allCases {
            let program = try SeccompFilter.program(role, mode: .on)
            var most = 0
            for nr in UInt32(0)...460 where nr != 16 {
                most = max(most, try BPFInterpreter.run(program, on: SeccompCall(nr: nr)).steps)
            }
            print("seccomp \(role): \(program.count) BPF instructions, at most \(most) run for a call other than ioctl")
            XCTAssertLessThanOrEqual(most, 20, "\(role): \(most) instructions for one call (\(program.count) in the program)")
        }
    }

    /// A list big enough that jumps pass 255 instructions (the 8-bit offsets of a
    /// conditional jump): the far targets are reached through `JA`s.
    func testLongJumpsAreReached() throws {
        var calls: [String] = []
        var refused: [String] = []
        for index in 0..<cseccomp_syscall_count() {
            let entry = cseccomp_syscall_at(index)!.pointee
            let name = String(cString: entry.name)
            if entry.nr == 16 { continue }
            if entry.nr % 3 == 0 { calls.append(name) } else if entry.nr % 3 == 1 { refused.append(name) }
        }
        let requests = (0..<700).map { UInt32(0xAE00 + $0 * 7) }
        let list = SeccompAllowList(systemCalls: calls, refused: refused, ioctls: requests,
                                    ioctlsOnDescriptor: [(0, 0x5402), (5, 0x5403), (-1, 0x1234)])
        let program = try SeccompFilter.program(list, mode: .on)
        XCTAssertGreaterThan(program.count, 1000)
        XCTAssertTrue(program.contains { Int32($0.code) == BPF_JMP | BPF_JA }, "no long jump was needed: the test proves nothing")
        var probes = AllowListMeaning.calls([list])
        for request in requests.prefix(50) + requests.suffix(50) {
            probes.append(SeccompCall(nr: 16, args: [7, UInt64(request), 0, 0, 0, 0]))
            probes.append(SeccompCall(nr: 16, args: [7, UInt64(request + 1), 0, 0, 0, 0]))
        }
        try assertProgram(program, means: list, mode: .on, calls: probes, "long list")
    }

    func testTooLongAProgramIsRefused() {
        let list = SeccompAllowList(systemCalls: ["read"], ioctls: (0..<5000).map { UInt32($0) })
        XCTAssertThrowsError(try SeccompFilter.program(list, mode: .on)) { error in
            XCTAssertTrue("\(error)".contains("more than the kernel's 4096"), "\(error)")
        }
    }

    func testCallBothAllowedAndRefusedIsAnError() {
        let list = SeccompAllowList(systemCalls: ["read", "openat"], refused: ["openat"])
        XCTAssertThrowsError(try SeccompFilter.program(list, mode: .on)) { error in
            XCTAssertTrue("\(error)".contains("openat is both allowed and refused"), "\(error)")
        }
    }

    func testUnknownNameIsAClearError() {
        for list in [SeccompAllowList(systemCalls: ["read", "no_such_call"]), SeccompAllowList(systemCalls: [], refused: ["opennat"])] {
            XCTAssertThrowsError(try SeccompFilter.program(list, mode: .on)) { error in
                XCTAssertTrue("\(error)".contains("unknown system call"), "\(error)")
            }
        }
    }

    /// ioctl allowed outright (the baseline) needs no request check.
    func testIoctlAllowedOutrightIgnoresRequests() throws {
        let list = SeccompAllowList(systemCalls: ["ioctl", "read"], ioctls: [0xAE80], ioctlsOnDescriptor: [(0, 0x5402)])
        let program = try SeccompFilter.program(list, mode: .on)
        for request: UInt64 in [0, 0xAE80, 0xAE01, 0xFFFF_FFFF_FFFF_FFFF] {
            XCTAssertEqual(try BPFInterpreter.run(program, on: SeccompCall(nr: 16, args: [3, request, 0, 0, 0, 0])).action, 0x7FFF_0000)
        }
    }
}
