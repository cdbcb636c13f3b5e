// A small io_uring that can only write to one TAP: many frames per system call.
#ifndef CTAPRING_H
#define CTAPRING_H

#include <stdint.h>
#include <sys/uio.h>

struct ctapring;

/// Creates a ring of `entries` submission slots (a power of two) for writes to
/// `fd`, which must be non-blocking (O_NONBLOCK: that keeps the writes in
/// order), that accepts nothing but IORING_OP_WRITEV without SQE flags
/// (IORING_REGISTER_RESTRICTIONS on a ring created disabled, then enabled).
/// Returns NULL with errno set when the kernel refuses any step (no io_uring,
/// io_uring disabled, a seccomp filter, no restrictions before Linux 5.10).
struct ctapring *ctapring_open(int fd, unsigned entries);
void ctapring_close(struct ctapring *ring);

/// Queues one writev of `count` iovecs, tagged `tag`. `iov` and the memory it
/// points to must stay valid until the write's completion is reaped. Writes run in
/// queue order; one that fails does not stop the next.
/// Returns 0, or -1 when every slot is taken (submit first).
int ctapring_queue_writev(struct ctapring *ring, const struct iovec *iov, unsigned count, uint64_t tag);

/// Submits what was queued and waits until all of it has completed. Returns the
/// number of writes submitted, or -1 with errno when io_uring_enter failed: the
/// completions reaped after it name the writes that went out; close the ring and
/// send the rest another way (one the kernel had taken may still go out).
int ctapring_submit_and_wait(struct ctapring *ring);

/// Takes one completion: 1 with its tag and result (bytes written or -errno), 0 if none.
int ctapring_reap(struct ctapring *ring, uint64_t *tag, int32_t *result);

#endif
