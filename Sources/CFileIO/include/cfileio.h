// File calls the Glibc Swift module does not expose (they need _GNU_SOURCE).
#ifndef CFILEIO_H
#define CFILEIO_H

#include <stdint.h>

/// O_DIRECT, which Glibc's Swift module hides.
int cfileio_o_direct_flag(void);
/// fallocate(2); returns 0 or -1 with errno set.
int cfileio_fallocate(int fd, int mode, int64_t offset, int64_t length);

#endif
