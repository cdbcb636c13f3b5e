import CSeccomp
import Seccomp
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The x86-64 system call table the filters are compiled with and the SIGSYS
/// handler names calls from.
final class SyscallTableTests: XCTestCase {
    private var entries: [(name: String, nr: Int32)] {
        (0..<cseccomp_syscall_count()).map {
            let entry = cseccomp_syscall_at($0)!.pointee
            return (String(cString: entry.name), entry.nr)
        }
    }

    func testNamesAreInOrderAndNumbersUnique() {
        let entries = entries
        XCTAssertGreaterThanOrEqual(entries.count, 362)  // Linux 6.1's x86-64 calls
        for (before, after) in zip(entries, entries.dropFirst()) {
            // The binary search needs strcmp order.
            XCTAssertLessThan(strcmp(before.name, after.name), 0, "\(before.name) before \(after.name)")
        }
        XCTAssertEqual(Set(entries.map(\.nr)).count, entries.count, "a number twice")
        XCTAssertTrue(entries.allSatisfy { (0..<512).contains($0.nr) })
        XCTAssertNil(cseccomp_syscall_at(cseccomp_syscall_count()))
    }

    func testEveryEntryIsFoundBothWays() {
        for entry in entries {
            XCTAssertEqual(cseccomp_syscall_number(entry.name), entry.nr, entry.name)
            XCTAssertEqual(String(cString: cseccomp_syscall_name(entry.nr)), entry.name)
        }
        XCTAssertEqual(cseccomp_syscall_number("no_such_call"), -1)
        XCTAssertEqual(cseccomp_syscall_number(""), -1)
        XCTAssertEqual(cseccomp_syscall_number("readz"), -1)
        XCTAssertNil(cseccomp_syscall_name(-1))
        XCTAssertNil(cseccomp_syscall_name(400))  // a gap in x86-64's numbering
        XCTAssertNil(cseccomp_syscall_name(0x4000_0000))
    }

    /// Against the numbers of the kernel's arch/x86/entry/syscalls/syscall_64.tbl
    /// (the x86-64 numbers never change).
    func testNumbersAreTheKernels() {
        let known: [(String, Int32)] = [
            ("read", 0), ("write", 1), ("open", 2), ("close", 3), ("mmap", 9), ("rt_sigreturn", 15), ("ioctl", 16),
            ("pread64", 17), ("sched_yield", 24), ("madvise", 28), ("getpid", 39), ("socket", 41), ("connect", 42),
            ("accept", 43), ("bind", 49), ("listen", 50), ("clone", 56), ("fork", 57), ("execve", 59), ("kill", 62),
            ("fcntl", 72), ("fsync", 74), ("ptrace", 101), ("setuid", 105), ("prctl", 157), ("mount", 165),
            ("gettid", 186), ("futex", 202), ("sched_getaffinity", 204), ("getdents64", 217), ("restart_syscall", 219),
            ("clock_gettime", 228), ("clock_nanosleep", 230), ("exit_group", 231), ("epoll_wait", 232),
            ("epoll_ctl", 233), ("tgkill", 234), ("openat", 257), ("newfstatat", 262), ("ppoll", 271),
            ("epoll_pwait", 281), ("timerfd_create", 283), ("fallocate", 285), ("accept4", 288), ("eventfd2", 290),
            ("epoll_create1", 291), ("pipe2", 293), ("preadv", 295), ("pwritev", 296), ("prlimit64", 302),
            ("process_vm_writev", 311), ("renameat2", 316), ("seccomp", 317), ("getrandom", 318),
            ("memfd_create", 319), ("execveat", 322), ("preadv2", 327), ("pwritev2", 328), ("statx", 332),
            ("rseq", 334), ("pidfd_send_signal", 424), ("io_uring_setup", 425), ("clone3", 435), ("faccessat2", 439),
            ("futex_waitv", 449), ("set_mempolicy_home_node", 450), ("cachestat", 451), ("mseal", 462),
        ]
        for (name, nr) in known {
            XCTAssertEqual(cseccomp_syscall_number(name), nr, name)
        }
    }

    /// Every name in every role's list is in the table (what `validate` checks).
    func testEveryListedNameIsKnown() {
        for role in SeccompRole.allCases {
            let list = SeccompAllowList.forRole(role)
            for name in list.systemCalls + list.refused {
                XCTAssertGreaterThanOrEqual(cseccomp_syscall_number(name), 0, "\(role): \(name)")
            }
        }
    }
}
