import Seccomp
import XCTest

/// The allow-lists build into filters (no typo in a system call name, no call
/// both allowed and refused) and keep out what no narrowed role may do. Loading a
/// filter would filter the test process itself, so the kill is tested through
/// `skiff seccomp-self-test` in IntegrationTests.
final class SeccompAllowListTests: XCTestCase {
    func testEveryRoleBuilds() throws {
        for role in SeccompRole.allCases {
            XCTAssertNoThrow(try SeccompFilter.validate(role), "\(role)")
        }
    }

    func testNarrowRolesCannotOpenSocketsOrRunPrograms() {
        let never = ["bind", "listen", "execve", "execveat", "ptrace", "fork", "vfork",
                     "mount", "setuid", "init_module", "process_vm_writev", "kill"]
        for role in [SeccompRole.vcpu, .events, .diskIO, .main, .api] {
            let calls = Set(SeccompAllowList.forRole(role).systemCalls)
            for name in never {
                XCTAssertFalse(calls.contains(name), "\(role) allows \(name)")
            }
            // Only the API's control work connects out: vm.send-migration runs there.
            XCTAssertEqual(calls.contains("socket") || calls.contains("connect"), role == .api, "\(role)")
        }
    }

    func testOnlyTheAPIThreadMayStartThreads() {
        // libdispatch's workers for the control work are started from the API's thread.
        for role in [SeccompRole.vcpu, .events, .diskIO, .main] {
            let calls = Set(SeccompAllowList.forRole(role).systemCalls)
            XCTAssertFalse(calls.contains("clone") || calls.contains("clone3"), "\(role) may start threads")
            XCTAssertTrue(SeccompAllowList.forRole(role).refused.contains("openat"), "\(role) may open files")
        }
    }

    func testDiskIOThreadOnlyMovesData() {
        // The I/O threads copy between an image and guest RAM: no ioctl (KVM), no
        // epoll, no file management, no sync (flush stays on the event loop, in order).
        let calls = Set(SeccompAllowList.forRole(.diskIO).systemCalls)
        XCTAssertTrue(calls.isSuperset(of: ["preadv", "pwritev", "futex", "write"]))
        for name in ["ioctl", "epoll_ctl", "fsync", "fdatasync", "fallocate", "ftruncate", "unlink", "close", "read"] {
            XCTAssertFalse(calls.contains(name), "diskIO allows \(name)")
        }
    }

    func testNoThreadMayMakeOrWidenAnIOURingOnceFiltered() {
        // A ring made then could do what the thread's filter forbids; the ones made
        // during set-up can only writev (TapWriteRing). Only the event loop submits.
        for role in SeccompRole.allCases {
            let list = SeccompAllowList.forRole(role)
            for name in ["io_uring_setup", "io_uring_register"] {
                XCTAssertFalse(list.systemCalls.contains(name), "\(role) allows \(name)")
            }
            XCTAssertEqual(list.systemCalls.contains("io_uring_enter"), role == .events || role == .process, "\(role)")
        }
        // Where a VM can be built after the filters are on, making a ring fails cleanly.
        for role in [SeccompRole.process, .api] {
            XCTAssertTrue(Set(SeccompAllowList.forRole(role).refused).isSuperset(of: ["io_uring_setup", "io_uring_register"]), "\(role)")
        }
    }

    func testBaselineForbidsExecAndPtrace() {
        let calls = Set(SeccompAllowList.forRole(.process).systemCalls)
        for name in ["bind", "listen", "execve", "execveat", "ptrace", "mount", "init_module", "setuid", "process_vm_writev"] {
            XCTAssertFalse(calls.contains(name), "baseline allows \(name)")
        }
    }

    func testVCPUMayOnlyRunAndReadRegistersThroughKVM() {
        let list = SeccompAllowList.forRole(.vcpu)
        XCTAssertFalse(list.systemCalls.contains("ioctl"), "ioctl must be allowed only per request number")
        XCTAssertEqual(list.ioctls.count, 5)  // KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS, TUNSETOFFLOAD, TCGETS
        XCTAssertEqual(list.ioctlsOnDescriptor.count, 1)  // TCSETS on stdin (terminal restore)
    }

    func testPreparedProgramsAreCompiledOnce() throws {
        try SeccompFilter.prepare([.vcpu, .events], mode: .log)
        for role in [SeccompRole.vcpu, .events] {
            let count = try XCTUnwrap(SeccompFilter.preparedInstructions(role, mode: .log), "\(role)")
            XCTAssertTrue((8...4096).contains(count), "\(role): \(count) instructions")  // BPF_MAXINSNS is 4096
        }
        XCTAssertNil(SeccompFilter.preparedInstructions(.vcpu, mode: .on), "another mode is another program")
        XCTAssertNil(SeccompFilter.preparedInstructions(.api, mode: .log), "only the roles asked for")
        let first = SeccompFilter.preparedInstructions(.vcpu, mode: .log)
        try SeccompFilter.prepare([.vcpu], mode: .log)
        XCTAssertEqual(SeccompFilter.preparedInstructions(.vcpu, mode: .log), first)
        try SeccompFilter.prepare([.vcpu], mode: .off)
        XCTAssertNil(SeccompFilter.preparedInstructions(.vcpu, mode: .off))
    }

    func testUnknownNameIsRefused() {
        let list = SeccompAllowList(systemCalls: ["no_such_call"])
        XCTAssertThrowsError(try SeccompFilter.install(.vcpu, allowList: list, mode: .on))
    }
}
