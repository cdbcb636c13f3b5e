#define _GNU_SOURCE
#include "caio.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// libaio's entry points take `io_context_t` (a pointer) where the kernel takes an
// `aio_context_t` (an unsigned long); both hold the same value.
typedef int (*setup_fn)(int, aio_context_t *);
typedef int (*destroy_fn)(aio_context_t);
typedef int (*submit_fn)(aio_context_t, long, struct iocb **);
typedef int (*getevents_fn)(aio_context_t, long, long, struct io_event *, struct timespec *);

static setup_fn p_setup;
static destroy_fn p_destroy;
static submit_fn p_submit;
static getevents_fn p_getevents;
static int loaded;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    const char *mode = getenv("SKIFF_AIO");
    if (mode && strcmp(mode, "sync") == 0) return;
    void *h = dlopen("libaio.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    p_setup = (setup_fn)dlsym(h, "io_setup");
    p_destroy = (destroy_fn)dlsym(h, "io_destroy");
    p_submit = (submit_fn)dlsym(h, "io_submit");
    p_getevents = (getevents_fn)dlsym(h, "io_getevents");
    loaded = p_setup && p_destroy && p_submit && p_getevents;
}

int caio_available(void) {
    pthread_once(&once, load);
    return loaded;
}

int caio_setup(unsigned nr_events, aio_context_t *ctx) {
    if (!caio_available()) return -ENOSYS;
    *ctx = 0;
    return p_setup((int)nr_events, ctx);
}

int caio_destroy(aio_context_t ctx) {
    if (!caio_available()) return -ENOSYS;
    return p_destroy(ctx);
}

int caio_submit(aio_context_t ctx, long nr, struct iocb **iocbs) {
    if (!caio_available()) return -ENOSYS;
    return p_submit(ctx, nr, iocbs);
}

int caio_getevents(aio_context_t ctx, long min_nr, long nr, struct io_event *events, struct timespec *timeout) {
    if (!caio_available()) return -ENOSYS;
    return p_getevents(ctx, min_nr, nr, events, timeout);
}

void caio_prep_rw(struct iocb *cb, int is_write, int fd, const struct iovec *iov, int iovcnt,
                  int64_t offset, int resfd, uint64_t user_data) {
    memset(cb, 0, sizeof *cb);
    cb->aio_lio_opcode = is_write ? IOCB_CMD_PWRITEV : IOCB_CMD_PREADV;
    cb->aio_fildes = (uint32_t)fd;
    cb->aio_buf = (uint64_t)(uintptr_t)iov;
    cb->aio_nbytes = (uint64_t)iovcnt;
    cb->aio_offset = offset;
    cb->aio_data = user_data;
    if (resfd >= 0) {
        cb->aio_flags = IOCB_FLAG_RESFD;
        cb->aio_resfd = (uint32_t)resfd;
    }
}

int caio_o_direct_flag(void) { return O_DIRECT; }

int caio_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length);
}
