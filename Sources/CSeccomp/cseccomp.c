#define _GNU_SOURCE
#include "cseccomp.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

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
    const char *name = cseccomp_syscall_name(nr);
    used = append(line, used, sizeof line, name ? name : "?");
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
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigsys;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSYS, &action, NULL);
}

int cseccomp_load_program(const struct sock_filter *program, size_t count, int tsync) {
    if (count == 0 || count > BPF_MAXINSNS) return -EINVAL;
    struct sock_fprog prog = {
        .len = (unsigned short)count,
        .filter = (struct sock_filter *)program,
    };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0, &prog);
    if (rc < 0) return -errno;
    if (rc > 0) return -ESRCH;  // TSYNC: the id of a thread that could not be synchronised
    return 0;
}
