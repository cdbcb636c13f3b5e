/*
 * blk: shared between the functional checks (blk.c) and the benchmark (bench.c).
 */
#ifndef BLK_H
#define BLK_H

#include "irq.h"
#include "virtio.h"

#define VIRTIO_BLK_F_SIZE_MAX	1
#define VIRTIO_BLK_F_SEG_MAX	2
#define VIRTIO_BLK_F_RO		5
#define VIRTIO_BLK_F_BLK_SIZE	6
#define VIRTIO_BLK_F_FLUSH	9
#define VIRTIO_BLK_F_DISCARD	13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN		0
#define VIRTIO_BLK_T_OUT	1
#define VIRTIO_BLK_T_FLUSH	4
#define VIRTIO_BLK_T_GET_ID	8
#define VIRTIO_BLK_T_DISCARD	11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK		0
#define VIRTIO_BLK_S_IOERR	1
#define VIRTIO_BLK_S_UNSUPP	2

#define SECTOR 512u
#define NO_STATUS 0xff

struct blk_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_dwz {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/* Per-device scratch memory (outside the image, see layout.h). */
#define DEV_MEM_SIZE	0x600000
#define OFF_HDRS	0x3000	/* 256 slots x 32 bytes */
#define OFF_STATUS	0x5000	/* 256 status bytes */
#define OFF_MISC	0x6000	/* GET_ID buffer, discard/write-zeroes segments */
#define OFF_DATA	0x10000
#define DATA_SIZE	0x400000

struct blk {
	struct vdev *d;
	struct vq q;
	uintptr_t mem;
	uint64_t capacity;	/* sectors */
	uint32_t seg_max, size_max, blk_size;
	int ro, timed_out;
	unsigned per;		/* descriptors reserved per slot */
};


static inline struct blk_hdr *slot_hdr(struct blk *b, unsigned s) { return (struct blk_hdr *)(b->mem + OFF_HDRS + 32 * s); }
static inline volatile uint8_t *slot_status(struct blk *b, unsigned s) { return (volatile uint8_t *)(b->mem + OFF_STATUS + s); }
static inline uint8_t *data(struct blk *b) { return (uint8_t *)(b->mem + OFF_DATA); }


void blk_submit(struct blk *b, unsigned slot, uint32_t type, uint64_t sector,
		       void *buf, uint32_t len, unsigned nseg, int device_writes);
unsigned segs(struct blk *b, unsigned want);
void blk_bench(struct blk *b, const char *mode, size_t mlen);

/* Counters of the checks run and failed (blk.c), also bumped by the benchmark. */
extern int checks, failures;

#endif
