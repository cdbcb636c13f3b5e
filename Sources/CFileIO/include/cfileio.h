// File calls the Glibc Swift module does not expose (they need _GNU_SOURCE).
#ifndef CFILEIO_H
#define CFILEIO_H

#include <stdint.h>
#include <sys/uio.h>

/// O_DIRECT, which Glibc's Swift module hides.
int cfileio_o_direct_flag(void);
/// fallocate(2); returns 0 or -1 with errno set.
int cfileio_fallocate(int fd, int mode, int64_t offset, int64_t length);

/// preadv2(2) with RWF_NOWAIT: reads only what the page cache holds now, never
/// waits for the disk; returns bytes read, or -1 with errno (EAGAIN: not cached).
long cfileio_preadv_nowait(int fd, const struct iovec *iov, int count, int64_t offset);

#endif
