/*
 * hostile: shared between the case runner (hostile.c) and the cases about request
 * sizes and overlapping buffers (sizes.c).
 */
#ifndef HOSTILE_H
#define HOSTILE_H

#include "virtio.h"

#define T_IN 0
#define T_OUT 1
#define VIRTIO_BLK_F_SEG_MAX 2

#define MEM_Q		(SCRATCH_BASE + 0x00000)
#define MEM_HDR		(SCRATCH_BASE + 0x04000)
#define MEM_STATUS	(SCRATCH_BASE + 0x04100)
#define MEM_IND		(SCRATCH_BASE + 0x10000)	/* indirect tables, 64 KiB */
#define MEM_BUF		(SCRATCH_BASE + 0x20000)	/* data, 256 KiB */
#define MEM_BUF2	(SCRATCH_BASE + 0x60000)
#define MEM_BIG		(SCRATCH_BASE + 0x100000)	/* one 17 MiB window, up to 0x1600000 */
#define OUTSIDE_RAM	0x1000000000ull			/* 64 GiB */
#define IN_HOLE		0xf0000000ull			/* 32-bit MMIO hole, not RAM */

struct hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

extern struct vdev *dev;
extern struct vq q;
extern int indirect_ok;
extern volatile uint8_t *status;
extern struct hdr *hdr;
extern volatile struct virtq_desc *ind;
extern int cases, accepted_bad;

void set(volatile struct virtq_desc *d, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
/* A request header + status pair, the data in between is up to the case. */
void header(uint32_t type, uint64_t sector);
/* Push head, kick, wait, report; must_fail: status 0 would be a VMM bug. */
void run(const char *name, uint16_t head, int must_fail);
int need_indirect(const char *name);

typedef void (*case_fn)(void);

/* sizes.c */
void c_sum_over_4gib(void);
void c_sum_over_4gib_indirect(void);
void c_sum_exactly_4gib(void);
void c_overlapping_buffers(void);
void c_data_over_header_and_status(void);
void c_indirect_whole_queue(void);

/* transport.c */
void c_queue_num_after_driver_ok(void);
void c_notification_storm(void);
void c_reset_mid_request(void);
void c_giant_config_write(void);

#endif
