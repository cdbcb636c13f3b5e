import CSeccomp
#if canImport(Glibc)
import Glibc
#endif

/// Compiles an allow-list to the classic BPF program seccomp(2) loads. Our own
/// compiler rather than libseccomp's (as Firecracker's seccompiler does): the
/// lists are simple (whole calls, ioctl request numbers, one descriptor), and
/// libseccomp's general one cost more instructions at start-up than the rest of
/// `skiff run` together (docs/performance.md). SeccompTests runs every program
/// through a BPF interpreter for every system call number.
///
/// The program makes the decisions libseccomp's did for the same rules:
/// - another architecture than x86-64 → kill the thread (libseccomp's default
///   bad-architecture action); so does an x32 call (number with bit 30 set),
///   except −1, which a tracer uses to skip a call: it gets the default action;
/// - a listed call → allow; a `refused` one → fail with EACCES;
/// - ioctl, when only some requests are allowed: the request's low 32 bits (the
///   kernel's command is an unsigned int) against each request allowed on any
///   descriptor, then descriptor (all 64 bits) and request for each
///   `ioctlsOnDescriptor` pair;
/// - anything else → the default action: trap (SIGSYS) or, in `log` mode, log.
///
/// The calls are found by a binary search over their numbers (`JGE`), ending in
/// runs of at most `chainLength` `JEQ`s.
enum SeccompCompiler {
    private enum Action: Equatable {
        case allow
        case refuse
        case checkIoctl
    }

    private struct Rule {
        let nr: UInt32
        let action: Action
    }

    private static let chainLength = 3
    private static let ioctl: UInt32 = 16  // __NR_ioctl on x86-64

    static func compile(_ list: SeccompAllowList, role: SeccompRole, mode: SeccompMode) throws -> [sock_filter] {
        let rules = try resolve(list, role: role)
        var builder = BPFProgramBuilder()
        let kill = builder.ret(CSECCOMP_RET_KILL_THREAD)
        let defaultAction = mode == .log ? CSECCOMP_RET_LOG : CSECCOMP_RET_TRAP
        let ioctlCheck = rules.contains { $0.action == .checkIoctl } ? ioctlBlock(list, &builder, defaultAction) : nil
        let tree = searchTree(rules[...], &builder, defaultAction: defaultAction, ioctlCheck: ioctlCheck)
        let x32 = builder.jump(BPF_JEQ, UInt32.max, ifTrue: tree, ifFalse: kill)  // −1: skipped by a tracer
        let native = builder.jump(BPF_JGE, CSECCOMP_X32_SYSCALL_BIT, ifTrue: x32, ifFalse: tree)
        let loadNr = builder.load(CSECCOMP_DATA_NR, then: native)
        let arch = builder.jump(BPF_JEQ, CSECCOMP_AUDIT_ARCH_X86_64, ifTrue: loadNr, ifFalse: kill)
        _ = builder.load(CSECCOMP_DATA_ARCH, then: arch)
        guard builder.count <= Int(CSECCOMP_MAX_INSTRUCTIONS) else {
            throw SeccompError("seccomp: the \(role) filter takes \(builder.count) BPF instructions, more than the kernel's \(CSECCOMP_MAX_INSTRUCTIONS)")
        }
        return builder.instructions
    }

    /// The list's rules by system call number, one per number. (A table indexed by
    /// number rather than a sort: sorting the rules cost more than all the rest.)
    private static func resolve(_ list: SeccompAllowList, role: SeccompRole) throws -> [Rule] {
        var actions = [Action?](repeating: nil, count: 512)  // every x86-64 number is below 512
        var count = 0
        func add(_ name: String, _ action: Action) throws {
            let nr = name.withCString { Int(cseccomp_syscall_number($0)) }
            guard actions.indices.contains(nr) else {
                throw SeccompError("seccomp: unknown system call \(name) in the \(role) list")
            }
            try add(nr, action, name)
        }
        func add(_ nr: Int, _ action: Action, _ name: String) throws {
            switch (actions[nr], action) {
            case (nil, _):
                actions[nr] = action
                count += 1
            case (.allow, .checkIoctl), (.checkIoctl, .allow):
                actions[nr] = .allow  // ioctl allowed outright needs no request check
            case (let known?, _) where known == action:
                break  // a call listed twice
            default:
                throw SeccompError("seccomp: system call \(name) is both allowed and refused in the \(role) list")
            }
        }
        for name in list.systemCalls { try add(name, .allow) }
        for name in list.refused { try add(name, .refuse) }
        if !list.ioctls.isEmpty || !list.ioctlsOnDescriptor.isEmpty {
            try add(Int(ioctl), .checkIoctl, "ioctl")
        }
        var rules: [Rule] = []
        rules.reserveCapacity(count)
        for (nr, action) in actions.enumerated() {
            if let action { rules.append(Rule(nr: UInt32(nr), action: action)) }
        }
        return rules
    }

    /// Finds A (the call's number) among `rules`, then takes the rule's action.
    private static func searchTree(_ rules: ArraySlice<Rule>, _ builder: inout BPFProgramBuilder,
                                   defaultAction: UInt32, ioctlCheck: BPFProgramBuilder.Label?) -> BPFProgramBuilder.Label {
        guard rules.count > chainLength else {
            var next = builder.ret(defaultAction)
            for rule in rules.reversed() {
                let target = switch rule.action {
                case .allow: builder.ret(CSECCOMP_RET_ALLOW)
                case .refuse: builder.ret(CSECCOMP_RET_ERRNO | UInt32(EACCES))
                case .checkIoctl: ioctlCheck!
                }
                next = builder.jump(BPF_JEQ, rule.nr, ifTrue: target, ifFalse: next)
            }
            return next
        }
        let middle = rules.startIndex + rules.count / 2
        // Built back to front: the upper half first, so the lower half ends up right after the test.
        let upper = searchTree(rules[middle...], &builder, defaultAction: defaultAction, ioctlCheck: ioctlCheck)
        let lower = searchTree(rules[..<middle], &builder, defaultAction: defaultAction, ioctlCheck: ioctlCheck)
        return builder.jump(BPF_JGE, rules[middle].nr, ifTrue: upper, ifFalse: lower)
    }

    /// ioctl's arguments: the request (low half of args[1]) against those allowed
    /// on any descriptor, then each (descriptor, request) pair.
    private static func ioctlBlock(_ list: SeccompAllowList, _ builder: inout BPFProgramBuilder,
                                   _ defaultAction: UInt32) -> BPFProgramBuilder.Label {
        let descriptorLow = CSECCOMP_DATA_ARGS        // args[0], little-endian halves
        let descriptorHigh = CSECCOMP_DATA_ARGS + 4
        let requestLow = CSECCOMP_DATA_ARGS + 8       // args[1]
        var next = builder.ret(defaultAction)
        for (fd, request) in list.ioctlsOnDescriptor.reversed() {
            // The descriptor as libseccomp compared it: the int widened to 64 bits.
            let descriptor = UInt64(bitPattern: Int64(fd))
            let allow = builder.ret(CSECCOMP_RET_ALLOW)
            let requestTest = builder.jump(BPF_JEQ, request, ifTrue: allow, ifFalse: next)
            let loadRequest = builder.load(requestLow, then: requestTest)
            let highTest = builder.jump(BPF_JEQ, UInt32(truncatingIfNeeded: descriptor >> 32), ifTrue: loadRequest, ifFalse: next)
            let loadHigh = builder.load(descriptorHigh, then: highTest)
            let lowTest = builder.jump(BPF_JEQ, UInt32(truncatingIfNeeded: descriptor), ifTrue: loadHigh, ifFalse: next)
            next = builder.load(descriptorLow, then: lowTest)
        }
        let requests = list.ioctls.sorted()
        guard !requests.isEmpty else { return next }
        for (index, request) in requests.enumerated().reversed() where index == 0 || requests[index - 1] != request {
            let allow = builder.ret(CSECCOMP_RET_ALLOW)
            next = builder.jump(BPF_JEQ, request, ifTrue: allow, ifFalse: next)
        }
        return builder.load(requestLow, then: next)
    }
}
