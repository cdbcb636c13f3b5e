#include "ctapring.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct ctapring {
	int fd;
	int tap;
	unsigned entries;
	// Submission ring (shared with the kernel).
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
	struct io_uring_sqe *sqes;
	// Completion ring.
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
	void *sq_map, *cq_map;
	size_t sq_map_len, cq_map_len, sqes_len;
	unsigned queued;     // written into sqes, tail not yet published
	unsigned in_flight;  // submitted, completion not yet reaped by submit_and_wait's wait
};

static int ring_setup(unsigned entries, struct io_uring_params *p)
{
	return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int ring_enter(int fd, unsigned submit, unsigned wait, unsigned flags)
{
	return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, NULL, 0);
}

static int ring_register(int fd, unsigned op, void *arg, unsigned count)
{
	return (int)syscall(__NR_io_uring_register, fd, op, arg, count);
}

void ctapring_close(struct ctapring *r)
{
	if (!r)
		return;
	if (r->sqes && r->sqes != MAP_FAILED)
		munmap(r->sqes, r->sqes_len);
	if (r->cq_map && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map)
		munmap(r->cq_map, r->cq_map_len);
	if (r->sq_map && r->sq_map != MAP_FAILED)
		munmap(r->sq_map, r->sq_map_len);
	if (r->fd >= 0)
		close(r->fd);
	free(r);
}

struct ctapring *ctapring_open(int tap, unsigned entries)
{
	// Order: the kernel runs a ring's writes one after another as it takes them,
	// unless one cannot complete at once and goes to a worker thread. On a
	// non-blocking file none does (EAGAIN is the write's result), so writes leave
	// in queue order; on a blocking one they might not, so it gets no ring.
	int flags = fcntl(tap, F_GETFL);
	if (flags < 0)
		return NULL;
	if (!(flags & O_NONBLOCK)) {
		errno = EINVAL;
		return NULL;
	}
	struct ctapring *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->fd = -1;
	r->tap = tap;
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	p.flags = IORING_SETUP_R_DISABLED;
	int err;
	r->fd = ring_setup(entries, &p);
	if (r->fd < 0)
		goto fail;
	r->entries = p.sq_entries;
	r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	int single = p.features & IORING_FEAT_SINGLE_MMAP;
	if (single && r->cq_map_len > r->sq_map_len)
		r->sq_map_len = r->cq_map_len;
	r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
	if (r->sq_map == MAP_FAILED)
		goto fail;
	r->cq_map = single ? r->sq_map
			   : mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
	if (r->cq_map == MAP_FAILED)
		goto fail;
	r->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
	r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (r->sqes == MAP_FAILED)
		goto fail;
	char *sq = r->sq_map, *cq = r->cq_map;
	r->sq_head = (unsigned *)(sq + p.sq_off.head);
	r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	r->sq_array = (unsigned *)(sq + p.sq_off.array);
	r->cq_head = (unsigned *)(cq + p.cq_off.head);
	r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);

	// writev is the only thing the ring will do: whoever controls this thread
	// cannot use it to get around its seccomp filter (io_uring's operations are
	// not system calls), which allows writev already. The TAP is not registered
	// as a fixed file: a registered file stays open until the ring's teardown
	// finishes, asynchronously, after close — and the TAP could not be opened
	// again meanwhile (TUNSETIFF: EBUSY).
	// No SQE flags are allowed either (no links, no IOSQE_ASYNC).
	struct io_uring_restriction rule;
	memset(&rule, 0, sizeof rule);
	rule.opcode = IORING_RESTRICTION_SQE_OP;
	rule.sqe_op = IORING_OP_WRITEV;
	if (ring_register(r->fd, IORING_REGISTER_RESTRICTIONS, &rule, 1) < 0)
		goto fail;
	if (ring_register(r->fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
		goto fail;
	return r;
fail:
	err = errno;
	ctapring_close(r);
	errno = err;
	return NULL;
}

int ctapring_queue_writev(struct ctapring *r, const struct iovec *iov, unsigned count, uint64_t tag)
{
	if (r->in_flight + r->queued >= r->entries)
		return -1;
	unsigned tail = *r->sq_tail + r->queued;  // only this thread writes the tail
	unsigned index = tail & *r->sq_mask;
	struct io_uring_sqe *sqe = &r->sqes[index];
	memset(sqe, 0, sizeof *sqe);
	sqe->opcode = IORING_OP_WRITEV;
	sqe->fd = r->tap;
	sqe->addr = (uint64_t)(uintptr_t)iov;
	sqe->len = count;
	sqe->off = 0;
	sqe->user_data = tag;
	r->sq_array[index] = index;
	r->queued++;
	return 0;
}

int ctapring_submit_and_wait(struct ctapring *r)
{
	int submitted = 0;
	if (r->queued > 0) {
		__atomic_store_n(r->sq_tail, *r->sq_tail + r->queued, __ATOMIC_RELEASE);
		r->in_flight += r->queued;
		r->queued = 0;
	}
	for (;;) {
		unsigned pending = *r->sq_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
		unsigned done = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE) - *r->cq_head;
		if (pending == 0 && done >= r->in_flight)
			break;
		unsigned wait = r->in_flight > done ? r->in_flight - done : 0;
		int n = ring_enter(r->fd, pending, wait, IORING_ENTER_GETEVENTS);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		submitted += n;
	}
	r->in_flight = 0;
	return submitted;
}

int ctapring_reap(struct ctapring *r, uint64_t *tag, int32_t *result)
{
	unsigned head = *r->cq_head;
	if (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
		return 0;
	struct io_uring_cqe *cqe = &r->cqes[head & *r->cq_mask];
	*tag = cqe->user_data;
	*result = cqe->res;
	__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
	return 1;
}
