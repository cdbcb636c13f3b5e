import CSeccomp
import Seccomp
#if canImport(Glibc)
import Glibc
#endif

/// What an allow-list means, written out plainly, without BPF: the action the
/// kernel must get for one call. The tests hold every compiled program to it.
enum AllowListMeaning {
    static func defaultAction(_ mode: SeccompMode) -> UInt32 {
        mode == .log ? CSECCOMP_RET_LOG : CSECCOMP_RET_TRAP
    }

    static func action(_ list: SeccompAllowList, mode: SeccompMode, for call: SeccompCall) -> UInt32 {
        // Another architecture, or x32's numbering: what libseccomp did (kill the thread),
        // but −1, a call a tracer skipped, which is simply not on the list.
        guard call.arch == CSECCOMP_AUDIT_ARCH_X86_64 else { return CSECCOMP_RET_KILL_THREAD }
        if call.nr >= 0x4000_0000 && call.nr != UInt32.max { return CSECCOMP_RET_KILL_THREAD }
        let name = call.nr < 0x4000_0000 ? cseccomp_syscall_name(Int32(call.nr)).map { String(cString: $0) } : nil
        if let name, list.systemCalls.contains(name) { return CSECCOMP_RET_ALLOW }
        if let name, list.refused.contains(name) { return CSECCOMP_RET_ERRNO | UInt32(EACCES) }
        if name == "ioctl" {
            let request = UInt32(truncatingIfNeeded: call.args[1])  // the kernel's cmd is an unsigned int
            if list.ioctls.contains(request) { return CSECCOMP_RET_ALLOW }
            let onDescriptor = list.ioctlsOnDescriptor.contains { fd, allowed in
                UInt64(bitPattern: Int64(fd)) == call.args[0] && allowed == request
            }
            if onDescriptor { return CSECCOMP_RET_ALLOW }
        }
        return defaultAction(mode)
    }

    /// ioctl calls worth trying against `lists`: every request any of them
    /// allows and a few none does, with their upper half clear and set, on
    /// descriptors 0 (stdin), 3, 0 with the upper half set, and −1.
    static func ioctlCalls(_ lists: [SeccompAllowList]) -> [SeccompCall] {
        var requests = Set<UInt32>([0, 0xAE01, 0x5401, 0x5402, 0x5403, 0xFFFF_FFFF, 0x4004_9409])
        for list in lists {
            requests.formUnion(list.ioctls)
            requests.formUnion(list.ioctlsOnDescriptor.map(\.1))
        }
        let descriptors: [UInt64] = [0, 3, 0x1_0000_0000, UInt64.max]
        var calls: [SeccompCall] = []
        for request in requests.sorted() {
            for high: UInt64 in [0, 0xDEAD_BEEF] {
                for fd in descriptors {
                    calls.append(SeccompCall(nr: 16, args: [fd, high << 32 | UInt64(request), 0, 0, 0, 0]))
                }
            }
        }
        return calls
    }

    /// Every call number 0…460 (arguments clear and set), x32's, −1, and the
    /// `ioctlCalls`; and the same numbers from another architecture.
    static func calls(_ lists: [SeccompAllowList]) -> [SeccompCall] {
        var calls: [SeccompCall] = []
        for nr in UInt32(0)...460 {
            calls.append(SeccompCall(nr: nr))
            calls.append(SeccompCall(nr: nr, args: Array(repeating: UInt64.max, count: 6)))
        }
        for nr: UInt32 in [0x4000_0000, 0x4000_0001, 0x4000_0010, 0x4000_0200, 0x4000_0208, 0x7FFF_FFFF, 0x8000_0000,
                           0xFFFF_FFFE, UInt32.max, 461, 512, 1000, 0x3FFF_FFFF] {
            calls.append(SeccompCall(nr: nr))
        }
        calls += ioctlCalls(lists)
        let i386: UInt32 = 0x4000_0003, aarch64: UInt32 = 0xC000_00B7, x86_64Big: UInt32 = 0x8000_003E
        for arch in [i386, aarch64, x86_64Big, 0] {
            for nr: UInt32 in [0, 1, 3, 16, 59, 231, 257, UInt32.max] {
                calls.append(SeccompCall(nr: nr, arch: arch))
            }
        }
        return calls
    }
}
