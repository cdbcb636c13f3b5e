/// Whether the VMM's threads filter their system calls (`skiff run --seccomp`).
public enum SeccompMode: String, CaseIterable, Sendable {
    /// Every role's allow-list is enforced: any other call ends the process.
    case on
    /// No filter at all (for debugging; the in-process tests run this way).
    case off
    /// The filters are loaded but a call outside them is only logged by the
    /// kernel (SECCOMP_RET_LOG, in the audit log / dmesg) and allowed: for
    /// finding what a new code path needs.
    case log
}
