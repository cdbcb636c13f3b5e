// libaio, loaded at run time with dlopen so that a host without libaio.so.1 still
// runs Skiff (the Storage layer then falls back to synchronous I/O).
//
// Why libaio rather than raw syscalls: libaio is the system library the design
// names, and going through it keeps us on the ABI distributions test. The structs
// are the kernel ABI from <linux/aio_abi.h> (libaio's `struct iocb` has the same
// layout), so building needs no libaio-dev: only the shared object at run time.
#ifndef CAIO_H
#define CAIO_H

#include <stdint.h>
#include <sys/uio.h>
#include <time.h>
#include <linux/aio_abi.h>
#include <sys/eventfd.h>

/// 1 when libaio.so.1 could be loaded and has every symbol we need, else 0.
/// Setting SKIFF_AIO=sync in the environment forces 0 (tests the fallback path).
int caio_available(void);

/// io_setup; returns 0 or -errno.
int caio_setup(unsigned nr_events, aio_context_t *ctx);
/// io_destroy; returns 0 or -errno.
int caio_destroy(aio_context_t ctx);
/// io_submit; returns the number submitted or -errno.
int caio_submit(aio_context_t ctx, long nr, struct iocb **iocbs);
/// io_getevents; returns the number of events or -errno.
int caio_getevents(aio_context_t ctx, long min_nr, long nr, struct io_event *events, struct timespec *timeout);

/// Fills `cb` for a vectored read (is_write == 0) or write, signalling `resfd`
/// (an eventfd) on completion when resfd >= 0.
void caio_prep_rw(struct iocb *cb, int is_write, int fd, const struct iovec *iov, int iovcnt,
                  int64_t offset, int resfd, uint64_t user_data);

/// O_DIRECT, which Glibc's Swift module hides (it needs _GNU_SOURCE).
int caio_o_direct_flag(void);
/// fallocate(2); returns 0 or -1 with errno set.
int caio_fallocate(int fd, int mode, int64_t offset, int64_t length);

#endif
