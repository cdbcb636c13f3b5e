#define _GNU_SOURCE
#include "cseccomp.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

int cseccomp_allow(scmp_filter_ctx ctx, int nr) {
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
}

int cseccomp_refuse(scmp_filter_ctx ctx, int nr, int error) {
    return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(error), nr, 0);
}

int cseccomp_allow_ioctl(scmp_filter_ctx ctx, uint32_t request) {
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, request));
}

int cseccomp_allow_ioctl_on(scmp_filter_ctx ctx, int fd, uint32_t request) {
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 2,
                            SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)fd),
                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, request));
}

// Names of x86-64 system calls by number, resolved before any filter is loaded:
// the handler runs in signal context and may only read them.
#define NAME_COUNT 512
static const char *names[NAME_COUNT];
static __thread const char *thread_role;
static void (*before_exit)(void);
static int handler_installed;

void cseccomp_set_thread_role(const char *role) { thread_role = role; }
void cseccomp_set_before_exit(void (*hook)(void)) { before_exit = hook; }
int cseccomp_exit_status(void) { return 128 + SIGSYS; }

static size_t append(char *buffer, size_t used, size_t size, const char *text) {
    while (*text && used + 1 < size) buffer[used++] = *text++;
    return used;
}

static size_t append_hex(char *buffer, size_t used, size_t size, unsigned long value) {
    char digits[17];
    int n = 0;
    do { digits[n++] = "0123456789abcdef"[value & 0xf]; value >>= 4; } while (value && n < 16);
    used = append(buffer, used, size, "0x");
    while (n > 0 && used + 1 < size) buffer[used++] = digits[--n];
    return used;
}

static size_t append_number(char *buffer, size_t used, size_t size, long value) {
    char digits[24];
    int n = 0;
    unsigned long v = value < 0 ? (unsigned long)(-value) : (unsigned long)value;
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v && n < 23);
    if (value < 0 && used + 1 < size) buffer[used++] = '-';
    while (n > 0 && used + 1 < size) buffer[used++] = digits[--n];
    return used;
}

// Async-signal-safe: formats into a stack buffer, one write(2), _exit(2).
static void on_sigsys(int signal, siginfo_t *info, void *context) {
    (void)signal;
    int nr = info->si_syscall;
    char line[256];
    size_t used = 0;
    used = append(line, used, sizeof line, "skiff: seccomp: thread ");
    used = append(line, used, sizeof line, thread_role ? thread_role : "(unfiltered role)");
    used = append(line, used, sizeof line, " made forbidden system call ");
    used = append(line, used, sizeof line, (nr >= 0 && nr < NAME_COUNT && names[nr]) ? names[nr] : "?");
    used = append(line, used, sizeof line, " (");
    used = append_number(line, used, sizeof line, nr);
    used = append(line, used, sizeof line, ")");
#if defined(__x86_64__)
    if (nr == SYS_ioctl && context) {  // which request: the second argument, in rsi
        const ucontext_t *uc = context;
        used = append(line, used, sizeof line, " with request ");
        used = append_hex(line, used, sizeof line, (unsigned long)uc->uc_mcontext.gregs[REG_RSI] & 0xFFFFFFFFul);
    }
#endif
    used = append(line, used, sizeof line, "\n");
    ssize_t ignored = write(STDERR_FILENO, line, used);
    (void)ignored;
    if (before_exit) before_exit();
    _exit(128 + SIGSYS);
}

void cseccomp_install_trap_handler(void) {
    if (__atomic_exchange_n(&handler_installed, 1, __ATOMIC_SEQ_CST)) return;
    for (int nr = 0; nr < NAME_COUNT; nr++) {
        names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);  // malloc'd, kept for good
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigsys;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSYS, &action, NULL);
}

int cseccomp_export(scmp_filter_ctx ctx, void **program, size_t *length) {
    int fd = memfd_create("skiff-seccomp-bpf", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) { close(fd); return rc; }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % sizeof(struct sock_filter) != 0 || size > BPF_MAXINSNS * (off_t)sizeof(struct sock_filter)) {
        close(fd);
        return size < 0 ? -errno : -EINVAL;
    }
    void *buffer = malloc((size_t)size);
    if (!buffer) { close(fd); return -ENOMEM; }
    ssize_t got = pread(fd, buffer, (size_t)size, 0);
    int saved = errno;
    close(fd);
    if (got != size) { free(buffer); return got < 0 ? -saved : -EIO; }
    *program = buffer;
    *length = (size_t)size;
    return 0;
}

int cseccomp_load_program(const void *program, size_t length, int tsync) {
    if (length == 0 || length % sizeof(struct sock_filter) != 0) return -EINVAL;
    struct sock_fprog prog = {
        .len = (unsigned short)(length / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)program,
    };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0, &prog);
    if (rc < 0) return -errno;
    if (rc > 0) return -ESRCH;  // TSYNC: the id of a thread that could not be synchronised
    return 0;
}
