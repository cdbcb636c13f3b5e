import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// An open `/dev/kvm`: the system-level handle that creates VMs and answers
/// capability questions.
public final class KVM: Sendable {
    public let fileDescriptor: Int32

    /// The KVM API version every supported kernel reports.
    public static let expectedAPIVersion: Int32 = 12

    public init(path: String = "/dev/kvm") throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw KVMError("open \(path)", errno: errno) }
        fileDescriptor = fd
        let version = ckvm_ioctl(fd, CKVM_GET_API_VERSION)
        guard version == KVM.expectedAPIVersion else {
            close(fd)
            throw KVMError("KVM_GET_API_VERSION (got \(version), need \(KVM.expectedAPIVersion))", errno: EINVAL)
        }
    }

    deinit { close(fileDescriptor) }

    /// The value KVM_CHECK_EXTENSION returns (0 = unsupported).
    public func check(_ capability: Int32) -> Int32 {
        max(0, ckvm_ioctl_value(fileDescriptor, CKVM_CHECK_EXTENSION, UInt(capability)))
    }

    /// Size of the shared `kvm_run` area each vCPU maps.
    public func vcpuMmapSize() throws -> Int {
        Int(try retryingOnInterrupt("KVM_GET_VCPU_MMAP_SIZE") { ckvm_ioctl(fileDescriptor, CKVM_GET_VCPU_MMAP_SIZE) })
    }

    public func createVM() throws -> VirtualMachine {
        let fd = try retryingOnInterrupt("KVM_CREATE_VM") { ckvm_ioctl_value(fileDescriptor, CKVM_CREATE_VM, 0) }
        return VirtualMachine(fileDescriptor: fd, kvm: self)
    }

    /// The CPUID leaves KVM can virtualise on this host.
    public func supportedCPUID() throws -> [kvm_cpuid_entry2] {
        var count: UInt32 = 128
        while true {
            guard let buffer = ckvm_cpuid2_alloc(count) else { throw KVMError("allocate kvm_cpuid2", errno: ENOMEM) }
            defer { free(buffer) }
            if ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_SUPPORTED_CPUID, buffer) == 0 {
                let entries = ckvm_cpuid2_entries(buffer)!
                return (0..<Int(buffer.pointee.nent)).map { entries[$0] }
            }
            if errno == E2BIG && count < 4096 { count *= 2; continue }
            throw KVMError("KVM_GET_SUPPORTED_CPUID", errno: errno)
        }
    }

    /// The MSRs KVM saves and restores for a vCPU.
    public func msrIndexList() throws -> [UInt32] {
        var probe = kvm_msr_list()
        probe.nmsrs = 0
        _ = ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_MSR_INDEX_LIST, &probe) // E2BIG, fills nmsrs
        let count = probe.nmsrs
        guard let list = ckvm_msr_list_alloc(count) else { throw KVMError("allocate kvm_msr_list", errno: ENOMEM) }
        defer { free(list) }
        try retryingOnInterrupt("KVM_GET_MSR_INDEX_LIST") { ckvm_ioctl_pointer(fileDescriptor, CKVM_GET_MSR_INDEX_LIST, list) }
        let indices = ckvm_msr_list_indices(list)!
        return (0..<Int(list.pointee.nmsrs)).map { indices[$0] }
    }

    /// True when this host's KVM is the PVM module (guest kernel code emulated,
    /// see docs): Skiff then picks slower-host defaults.
    public static var isPVMHost: Bool {
        access("/sys/module/kvm_pvm", F_OK) == 0
    }
}
