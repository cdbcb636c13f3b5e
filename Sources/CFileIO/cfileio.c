#define _GNU_SOURCE
#include "cfileio.h"

#include <fcntl.h>

int cfileio_o_direct_flag(void) { return O_DIRECT; }

int cfileio_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length);
}
