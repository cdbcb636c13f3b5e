// What the seccomp filters need from C: the x86-64 system call table (names and
// numbers, from the kernel's <asm/unistd_64.h>), loading a BPF program with
// seccomp(2), and the SIGSYS handler that names the thread's role and the
// forbidden system call. The programs themselves are compiled in Swift
// (`SeccompCompiler`).
#ifndef CSECCOMP_H
#define CSECCOMP_H

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>

/// One x86-64 system call: its name without the __NR_ prefix, and its number.
struct cseccomp_syscall {
    const char *name;
    int nr;
};

/// The number of system call `name` ("openat"), or -1 when there is none.
int cseccomp_syscall_number(const char *name);
/// The name of system call `nr`, or NULL. Async-signal-safe.
const char *cseccomp_syscall_name(int nr);
/// The table's entries, in strcmp order of their names (for tests).
size_t cseccomp_syscall_count(void);
const struct cseccomp_syscall *cseccomp_syscall_at(size_t index);

/// What a filter reads and returns, as constants Swift can use (some of the
/// kernel's are macros Swift does not import).
static const uint32_t CSECCOMP_AUDIT_ARCH_X86_64 = AUDIT_ARCH_X86_64;
/// x32 system calls: x86-64 numbers with this bit set (the kernel's __X32_SYSCALL_BIT).
static const uint32_t CSECCOMP_X32_SYSCALL_BIT = 0x40000000;
static const uint32_t CSECCOMP_DATA_NR = offsetof(struct seccomp_data, nr);
static const uint32_t CSECCOMP_DATA_ARCH = offsetof(struct seccomp_data, arch);
static const uint32_t CSECCOMP_DATA_ARGS = offsetof(struct seccomp_data, args);
static const uint32_t CSECCOMP_MAX_INSTRUCTIONS = BPF_MAXINSNS;
static const uint32_t CSECCOMP_RET_KILL_THREAD = SECCOMP_RET_KILL_THREAD;
static const uint32_t CSECCOMP_RET_TRAP = SECCOMP_RET_TRAP;
static const uint32_t CSECCOMP_RET_ERRNO = SECCOMP_RET_ERRNO;
static const uint32_t CSECCOMP_RET_LOG = SECCOMP_RET_LOG;
static const uint32_t CSECCOMP_RET_ALLOW = SECCOMP_RET_ALLOW;

/// Installs the SIGSYS handler (once per process; idempotent).
void cseccomp_install_trap_handler(void);
/// The calling thread's role, printed by the handler ("vcpu", "events", …). `role`
/// must stay valid for the thread's life (pass a string literal or leaked copy).
void cseccomp_set_thread_role(const char *role);
/// Called by the handler before it exits (e.g. to put the terminal back);
/// must be async-signal-safe.
void cseccomp_set_before_exit(void (*hook)(void));

/// Loads a BPF program of `count` instructions on the calling thread (all threads
/// with `tsync`), after PR_SET_NO_NEW_PRIVS. Returns 0 or -errno (-ESRCH when a
/// thread could not be synchronised).
int cseccomp_load_program(const struct sock_filter *program, size_t count, int tsync);

/// The exit status the handler ends the process with: 128 + SIGSYS, what a shell
/// reports for a process killed by SIGSYS (SECCOMP_RET_KILL_PROCESS).
int cseccomp_exit_status(void);

#endif
