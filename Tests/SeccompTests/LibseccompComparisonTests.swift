import CSeccomp
import Seccomp
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Where libseccomp is installed (it is no build dependency any more), each role's
/// program is held to the one libseccomp compiles from the same rules (the rules
/// skiff gave it before `SeccompCompiler`): both run in the interpreter on the same
/// calls and must decide alike. libseccomp's own system call table also checks ours.
final class LibseccompComparisonTests: XCTestCase {
    /// The few libseccomp 2.5 functions needed, opened at run time.
    private struct Libseccomp {
        // The values of <seccomp.h>'s enums and action macros.
        static let optimize: Int32 = 8       // SCMP_FLTATR_CTL_OPTIMIZE
        static let compareEqual: Int32 = 4   // SCMP_CMP_EQ
        static let compareMasked: Int32 = 7  // SCMP_CMP_MASKED_EQ

        /// struct scmp_arg_cmp
        struct Comparison {
            var arg: UInt32
            var op: Int32
            var datumA: UInt64
            var datumB: UInt64
        }

        let initialize: @convention(c) (UInt32) -> OpaquePointer?
        let release: @convention(c) (OpaquePointer?) -> Void
        let setAttribute: @convention(c) (OpaquePointer?, Int32, UInt32) -> Int32
        let resolve: @convention(c) (UnsafePointer<CChar>) -> Int32
        let addRule: @convention(c) (OpaquePointer?, UInt32, Int32, UInt32, UnsafeRawPointer?) -> Int32
        let export: @convention(c) (OpaquePointer?, Int32) -> Int32

        init?() {
            guard let handle = dlopen("libseccomp.so.2", RTLD_NOW) else { return nil }
            func symbol<T>(_ name: String, _ type: T.Type) -> T? {
                dlsym(handle, name).map { unsafeBitCast($0, to: type) }
            }
            guard let initialize = symbol("seccomp_init", (@convention(c) (UInt32) -> OpaquePointer?).self),
                  let release = symbol("seccomp_release", (@convention(c) (OpaquePointer?) -> Void).self),
                  let setAttribute = symbol("seccomp_attr_set", (@convention(c) (OpaquePointer?, Int32, UInt32) -> Int32).self),
                  let resolve = symbol("seccomp_syscall_resolve_name", (@convention(c) (UnsafePointer<CChar>) -> Int32).self),
                  let addRule = symbol("seccomp_rule_add_array",
                                       (@convention(c) (OpaquePointer?, UInt32, Int32, UInt32, UnsafeRawPointer?) -> Int32).self),
                  let export = symbol("seccomp_export_bpf", (@convention(c) (OpaquePointer?, Int32) -> Int32).self)
            else { return nil }
            (self.initialize, self.release, self.setAttribute, self.resolve, self.addRule, self.export) =
                (initialize, release, setAttribute, resolve, addRule, export)
        }

        /// The program libseccomp makes of `list`, from the rules skiff used to give it.
        func program(_ list: SeccompAllowList, mode: SeccompMode) throws -> [sock_filter] {
            guard let ctx = initialize(mode == .log ? CSECCOMP_RET_LOG : CSECCOMP_RET_TRAP) else { throw Failure("seccomp_init") }
            defer { release(ctx) }
            try check(setAttribute(ctx, Self.optimize, 2), "binary tree")
            for name in list.systemCalls { try check(addRule(ctx, CSECCOMP_RET_ALLOW, resolve(name), 0, nil), name) }
            for name in list.refused {
                try check(addRule(ctx, CSECCOMP_RET_ERRNO | UInt32(EACCES), resolve(name), 0, nil), name)
            }
            for request in list.ioctls {
                var rule = [Comparison(arg: 1, op: Self.compareMasked, datumA: 0xFFFF_FFFF, datumB: UInt64(request))]
                try check(addRule(ctx, CSECCOMP_RET_ALLOW, 16, 1, &rule), "ioctl \(request)")
            }
            for (fd, request) in list.ioctlsOnDescriptor {
                var rule = [Comparison(arg: 0, op: Self.compareEqual, datumA: UInt64(bitPattern: Int64(fd)), datumB: 0),
                            Comparison(arg: 1, op: Self.compareMasked, datumA: 0xFFFF_FFFF, datumB: UInt64(request))]
                try check(addRule(ctx, CSECCOMP_RET_ALLOW, 16, 2, &rule), "ioctl(\(fd), \(request))")
            }
            guard let file = tmpfile() else { throw Failure("tmpfile") }
            defer { fclose(file) }
            let fd = fileno(file)
            try check(export(ctx, fd), "export")
            let size = lseek(fd, 0, SEEK_END)
            var program = [sock_filter](repeating: sock_filter(), count: Int(size) / MemoryLayout<sock_filter>.stride)
            let got = program.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            guard got == size, size > 0 else { throw Failure("reading the exported program") }
            return program
        }

        private func check(_ rc: Int32, _ what: String) throws {
            guard rc == 0 else { throw Failure("libseccomp: \(what): \(rc)") }
        }
    }

    private struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    private func libseccomp() throws -> Libseccomp {
        guard let library = Libseccomp() else {
            throw XCTSkip("libseccomp.so.2 is not installed: skiff's programs are not compared with libseccomp's")
        }
        return library
    }

    func testEveryRoleDecidesAsLibseccompDid() throws {
        let library = try libseccomp()
        let lists = SeccompRole.allCases.map(SeccompAllowList.forRole)
        let calls = AllowListMeaning.calls(lists)
        for role in SeccompRole.allCases {
            for mode in [SeccompMode.on, .log] {
                let ours = try SeccompFilter.program(role, mode: mode)
                let theirs = try library.program(SeccompAllowList.forRole(role), mode: mode)
                try BPFInterpreter.check(theirs)
                var differences = 0
                for call in calls {
                    let mine = try BPFInterpreter.run(ours, on: call).action
                    let libseccomps = try BPFInterpreter.run(theirs, on: call).action
                    if mine != libseccomps {
                        differences += 1
                        if differences <= 10 {
                            XCTFail("\(role) \(mode): nr \(call.nr) arch 0x\(String(call.arch, radix: 16)) args \(call.args.prefix(2)): " +
                                    "0x\(String(mine, radix: 16)), libseccomp 0x\(String(libseccomps, radix: 16))")
                        }
                    }
                }
                XCTAssertEqual(differences, 0, "\(role) \(mode)")
            }
        }
    }

    /// libseccomp's table (its own, not the kernel header) agrees with ours for
    /// every name it knows.
    func testSystemCallNumbersAgree() throws {
        let library = try libseccomp()
        var known = 0
        for index in 0..<cseccomp_syscall_count() {
            let entry = cseccomp_syscall_at(index)!.pointee
            let theirs = library.resolve(entry.name)
            guard theirs >= 0 else { continue }  // a call newer than this libseccomp, or one it lacks
            known += 1
            XCTAssertEqual(theirs, entry.nr, String(cString: entry.name))
        }
        XCTAssertGreaterThan(known, 300)
    }
}
