// libseccomp (Debian's libseccomp-dev), linked: seccomp is a security feature, so a
// host without it must fail to build rather than silently run unfiltered.
//
// Wrappers for what Swift cannot call directly (the SCMP_A1 rule macros), and the
// SIGSYS handler that names the thread's role and the forbidden system call.
#ifndef CSECCOMP_H
#define CSECCOMP_H

#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>

/// Allows system call `nr` unconditionally. Returns 0 or -errno.
int cseccomp_allow(scmp_filter_ctx ctx, int nr);
/// Makes system call `nr` fail with `error` instead of ending the process.
int cseccomp_refuse(scmp_filter_ctx ctx, int nr, int error);
/// Allows ioctl(any fd, request) for one request number (its low 32 bits are
/// compared: the kernel's ioctl takes an unsigned int command). Returns 0 or -errno.
int cseccomp_allow_ioctl(scmp_filter_ctx ctx, uint32_t request);
/// Allows ioctl(fd, request) for one descriptor and request. Returns 0 or -errno.
int cseccomp_allow_ioctl_on(scmp_filter_ctx ctx, int fd, uint32_t request);

/// Installs the SIGSYS handler (once per process; idempotent) and resolves the
/// system call names it prints, so that the handler itself allocates nothing.
void cseccomp_install_trap_handler(void);
/// The calling thread's role, printed by the handler ("vcpu", "events", …). `role`
/// must stay valid for the thread's life (pass a string literal or leaked copy).
void cseccomp_set_thread_role(const char *role);
/// Called by the handler before it exits (e.g. to put the terminal back);
/// must be async-signal-safe.
void cseccomp_set_before_exit(void (*hook)(void));

/// Compiles `ctx` to its BPF program (what seccomp_load would load) into a malloc'd
/// buffer the caller frees: through a memfd, as libseccomp 2.5 exports only to a
/// descriptor. Returns 0 or -errno.
int cseccomp_export(scmp_filter_ctx ctx, void **program, size_t *length);
/// Loads a program from `cseccomp_export` on the calling thread (all threads with
/// `tsync`), after PR_SET_NO_NEW_PRIVS, as seccomp_load does. Returns 0 or -errno
/// (-ESRCH when a thread could not be synchronised).
int cseccomp_load_program(const void *program, size_t length, int tsync);

/// The exit status the handler ends the process with: 128 + SIGSYS, what a shell
/// reports for a process killed by SIGSYS (SECCOMP_RET_KILL_PROCESS).
int cseccomp_exit_status(void);

#endif
