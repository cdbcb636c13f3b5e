#define _GNU_SOURCE
#include "cfileio.h"

#include <fcntl.h>
#include <sys/uio.h>

int cfileio_o_direct_flag(void) { return O_DIRECT; }

int cfileio_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length);
}

long cfileio_preadv_nowait(int fd, const struct iovec *iov, int count, int64_t offset) {
    return (long)preadv2(fd, iov, count, (off_t)offset, RWF_NOWAIT);
}
