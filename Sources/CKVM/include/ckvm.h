// C shim for Linux interfaces Swift cannot import directly: the variadic ioctl(2),
// request numbers built by the _IO* macros, and a few GNU-only calls.
// No logic lives here.
#ifndef CKVM_H
#define CKVM_H

#include <linux/kvm.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdint.h>
#include <stddef.h>
#include <unistd.h>
#include <termios.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>

// MARK: - ioctl without varargs

static inline int ckvm_ioctl(int fd, unsigned long request) {
    return ioctl(fd, request, 0);
}
static inline int ckvm_ioctl_value(int fd, unsigned long request, unsigned long value) {
    return ioctl(fd, request, value);
}
static inline int ckvm_ioctl_pointer(int fd, unsigned long request, void *pointer) {
    return ioctl(fd, request, pointer);
}

// MARK: - /dev/kvm requests

static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long CKVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;

// MARK: - VM requests

static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
static const unsigned long CKVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long CKVM_CREATE_PIT2 = KVM_CREATE_PIT2;
static const unsigned long CKVM_IRQ_LINE = KVM_IRQ_LINE;
static const unsigned long CKVM_IRQFD = KVM_IRQFD;
static const unsigned long CKVM_IOEVENTFD = KVM_IOEVENTFD;
static const unsigned long CKVM_GET_DIRTY_LOG = KVM_GET_DIRTY_LOG;
static const unsigned long CKVM_CLEAR_DIRTY_LOG = KVM_CLEAR_DIRTY_LOG;
static const unsigned long CKVM_GET_CLOCK = KVM_GET_CLOCK;
static const unsigned long CKVM_SET_CLOCK = KVM_SET_CLOCK;
static const unsigned long CKVM_GET_IRQCHIP = KVM_GET_IRQCHIP;
static const unsigned long CKVM_SET_IRQCHIP = KVM_SET_IRQCHIP;
static const unsigned long CKVM_GET_PIT2 = KVM_GET_PIT2;
static const unsigned long CKVM_SET_PIT2 = KVM_SET_PIT2;
static const unsigned long CKVM_ENABLE_CAP = KVM_ENABLE_CAP;
static const unsigned int CKVM_IOEVENTFD_FLAG_PIO = KVM_IOEVENTFD_FLAG_PIO;
static const unsigned int CKVM_IOEVENTFD_FLAG_DATAMATCH = KVM_IOEVENTFD_FLAG_DATAMATCH;

// MARK: - Atomics (Swift's need a newer platform than the package declares)

/// Sets `bits` in `*word` atomically (the VMM-side dirty bitmap).
static inline void ckvm_atomic_or64(uint64_t *word, uint64_t bits) {
    __atomic_fetch_or(word, bits, __ATOMIC_RELAXED);
}
/// Reads `*word` atomically (a plain load on x86), so a reader never races a marker.
static inline uint64_t ckvm_atomic_load64(uint64_t *word) {
    return __atomic_load_n(word, __ATOMIC_RELAXED);
}
/// Reads `*word` and zeroes it, atomically.
static inline uint64_t ckvm_atomic_exchange_zero64(uint64_t *word) {
    return __atomic_exchange_n(word, 0, __ATOMIC_ACQ_REL);
}

// MARK: - vCPU requests

static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_GET_FPU = KVM_GET_FPU;
static const unsigned long CKVM_SET_FPU = KVM_SET_FPU;
static const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long CKVM_GET_CPUID2 = KVM_GET_CPUID2;
static const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long CKVM_GET_LAPIC = KVM_GET_LAPIC;
static const unsigned long CKVM_SET_LAPIC = KVM_SET_LAPIC;
static const unsigned long CKVM_GET_MP_STATE = KVM_GET_MP_STATE;
static const unsigned long CKVM_SET_MP_STATE = KVM_SET_MP_STATE;
static const unsigned long CKVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long CKVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
static const unsigned long CKVM_GET_XCRS = KVM_GET_XCRS;
static const unsigned long CKVM_SET_XCRS = KVM_SET_XCRS;
static const unsigned long CKVM_GET_XSAVE = KVM_GET_XSAVE;
static const unsigned long CKVM_SET_XSAVE = KVM_SET_XSAVE;
static const unsigned long CKVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
static const unsigned long CKVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;
static const unsigned long CKVM_SET_SIGNAL_MASK = KVM_SET_SIGNAL_MASK;
static const unsigned long CKVM_KVMCLOCK_CTRL = KVM_KVMCLOCK_CTRL;

// MARK: - TAP requests

static const unsigned long CKVM_TUNSETIFF = TUNSETIFF;
static const unsigned long CKVM_TUNGETIFF = TUNGETIFF;
static const unsigned long CKVM_TUNSETOFFLOAD = TUNSETOFFLOAD;
static const unsigned long CKVM_TUNSETVNETHDRSZ = TUNSETVNETHDRSZ;
static const unsigned long CKVM_TUNSETPERSIST = TUNSETPERSIST;

// MARK: - Structures with flexible arrays, allocated on the C side

/// A kvm_cpuid2 with room for `count` entries; free with free(3).
struct kvm_cpuid2 *ckvm_cpuid2_alloc(uint32_t count);
/// A kvm_msrs with room for `count` entries; free with free(3).
struct kvm_msrs *ckvm_msrs_alloc(uint32_t count);
/// A kvm_msr_list with room for `count` indices; free with free(3).
struct kvm_msr_list *ckvm_msr_list_alloc(uint32_t count);

static inline struct kvm_cpuid_entry2 *ckvm_cpuid2_entries(struct kvm_cpuid2 *c) { return c->entries; }
static inline struct kvm_msr_entry *ckvm_msrs_entries(struct kvm_msrs *m) { return m->entries; }
static inline uint32_t *ckvm_msr_list_indices(struct kvm_msr_list *l) { return l->indices; }

// MARK: - Unions Swift sees poorly

static inline struct kvm_run *ckvm_run(void *p) { return (struct kvm_run *)p; }
/* immediate_exit is stored by the thread that kicks a vCPU and by the vCPU's own
 * thread (clearing it after an interrupted KVM_RUN): atomic stores, so the two never
 * race. Relaxed is enough: the vCPU thread re-reads its gate (a lock) after clearing. */
static inline void ckvm_run_set_immediate_exit(struct kvm_run *run, uint8_t value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_RELAXED);
}
static inline uint8_t *ckvm_run_io_data(struct kvm_run *run) { return (uint8_t *)run + run->io.data_offset; }
/// The MMIO exit's data bytes, in place: Swift sees the exit union only
/// through computed properties, so a pointer taken there would be to a copy.
static inline uint8_t *ckvm_run_mmio_data(struct kvm_run *run) { return run->mmio.data; }

// MARK: - GNU calls

static const unsigned int CKVM_MFD_CLOEXEC = 0x0001U;
static inline int ckvm_memfd_create(const char *name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}
static inline int ckvm_sigrtmin(void) { return SIGRTMIN; }
static inline pid_t ckvm_gettid(void) { return (pid_t)syscall(SYS_gettid); }
/// Names the calling thread (prctl is variadic); at most 15 bytes are kept.
static inline int ckvm_set_thread_name(const char *name) { return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL); }

// Layouts the Swift side relies on.
_Static_assert(sizeof(struct kvm_regs) == 144, "kvm_regs layout");
_Static_assert(sizeof(struct kvm_sregs) == 312, "kvm_sregs layout");
_Static_assert(sizeof(struct kvm_userspace_memory_region) == 32, "memory region layout");
_Static_assert(sizeof(struct kvm_irqfd) == 32, "kvm_irqfd layout");
_Static_assert(sizeof(struct kvm_ioeventfd) == 64, "kvm_ioeventfd layout");

// MARK: - Snapshot state requests (VMState)

static const unsigned long CKVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;
static const unsigned long CKVM_SET_TSC_KHZ = KVM_SET_TSC_KHZ;
static const unsigned long CKVM_GET_XSAVE2 = KVM_GET_XSAVE2;

#endif
