import Foundation
import Testing

/// The project's guest Linux (kernel + initramfs + test cmdline), as located by
/// scripts/guest-linux.sh and exported by scripts/test.sh.
enum GuestLinux {
    static let environment = ProcessInfo.processInfo.environment

    static var kernel: String? { environment["SKIFF_GUEST_KERNEL"].flatMap(existing) }
    static var initrd: String? { environment["SKIFF_GUEST_INITRD"].flatMap(existing) }
    static var commandLine: String { environment["SKIFF_GUEST_CMDLINE"] ?? "console=ttyS0 reboot=k" }

    /// True when the artefacts are there, or when scripts/test.sh demands the
    /// acceptance tests run (then a missing artefact is a failure, not a skip).
    static var shouldRun: Bool {
        (kernel != nil && initrd != nil) || environment["SKIFF_REQUIRE_ACCEPTANCE"] == "1"
    }

    static let skipReason: Comment =
        "needs the guest Linux: set SKIFF_GUEST_KERNEL and SKIFF_GUEST_INITRD (scripts/test.sh does)"

    private static func existing(_ path: String) -> String? {
        FileManager.default.fileExists(atPath: path) ? path : nil
    }

    /// Generous: guest kernel code is emulated on a kvm_pvm host (minutes, not seconds).
    static var bootTimeout: Double { Host.isPVM ? 1500 : 120 }
}
