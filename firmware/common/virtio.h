/* Guest-side virtio-mmio (version 2) transport and split virtqueues. */
#ifndef SKIFF_FW_VIRTIO_H
#define SKIFF_FW_VIRTIO_H

#include "rt.h"

/* virtio-mmio registers (virtio 1.2, 4.2.2). */
#define VMMIO_MAGIC		0x000
#define VMMIO_VERSION		0x004
#define VMMIO_DEVICE_ID		0x008
#define VMMIO_VENDOR_ID		0x00c
#define VMMIO_DEVICE_FEATURES	0x010
#define VMMIO_DEVICE_FEATURES_SEL 0x014
#define VMMIO_DRIVER_FEATURES	0x020
#define VMMIO_DRIVER_FEATURES_SEL 0x024
#define VMMIO_QUEUE_SEL		0x030
#define VMMIO_QUEUE_NUM_MAX	0x034
#define VMMIO_QUEUE_NUM		0x038
#define VMMIO_QUEUE_READY	0x044
#define VMMIO_QUEUE_NOTIFY	0x050
#define VMMIO_INTERRUPT_STATUS	0x060
#define VMMIO_INTERRUPT_ACK	0x064
#define VMMIO_STATUS		0x070
#define VMMIO_QUEUE_DESC_LO	0x080
#define VMMIO_QUEUE_DESC_HI	0x084
#define VMMIO_QUEUE_DRIVER_LO	0x090
#define VMMIO_QUEUE_DRIVER_HI	0x094
#define VMMIO_QUEUE_DEVICE_LO	0x0a0
#define VMMIO_QUEUE_DEVICE_HI	0x0a4
#define VMMIO_CONFIG_GENERATION	0x0fc
#define VMMIO_CONFIG		0x100

#define VIRTIO_MAGIC 0x74726976	/* "virt" */

#define VSTAT_ACKNOWLEDGE	1
#define VSTAT_DRIVER		2
#define VSTAT_DRIVER_OK		4
#define VSTAT_FEATURES_OK	8
#define VSTAT_NEEDS_RESET	64
#define VSTAT_FAILED		128

#define VIRTIO_F_INDIRECT_DESC	28
#define VIRTIO_F_EVENT_IDX	29
#define VIRTIO_F_VERSION_1	32

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
#define VIRTQ_DESC_F_NEXT	1
#define VIRTQ_DESC_F_WRITE	2
#define VIRTQ_DESC_F_INDIRECT	4

struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[];
};
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	1

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[];
};

struct vdev {
	uintptr_t base;
	uint64_t size;
	uint32_t irq;
	uint32_t version;
	uint32_t device_id;
	uint64_t device_features;
	uint64_t features;		/* negotiated */
};

struct vq {
	struct vdev *dev;
	uint16_t index;
	uint16_t num;
	volatile struct virtq_desc *desc;
	volatile struct virtq_avail *avail;
	volatile struct virtq_used *used;
	uint16_t avail_idx;		/* next avail index to publish */
	uint16_t last_used;		/* next used index to consume */
	uint16_t kicked_idx;		/* avail idx at the last notify decision */
	uint8_t event_idx;		/* VIRTIO_F_EVENT_IDX negotiated */
	uint64_t notifies, notifies_skipped;
};

#define VIRTIO_MAX_DEVICES 16

/*
 * Devices from every `virtio_mmio.device=<size>@<base>:<irq>[:<id>]` on the
 * command line.  Fills `out` (probed: magic, version, device ID; a transport
 * with the wrong magic or device ID 0 is reported and skipped).  Returns the
 * number found.
 */
int virtio_find(struct vdev *out, int max, int verbose);

static inline uint32_t vread(struct vdev *d, uint32_t off) { return mmio_read32(d->base + off); }
static inline void vwrite(struct vdev *d, uint32_t off, uint32_t v) { mmio_write32(d->base + off, v); }

/* Reset, ACKNOWLEDGE|DRIVER, negotiate `want` (& device's), FEATURES_OK.
 * Returns 0 or a negative step number on failure. */
int virtio_negotiate(struct vdev *d, uint64_t want);
/*
 * Features every driver adds to what it asks for: VIRTIO_F_EVENT_IDX when the
 * command line has `virtio.event_idx` (exercises the device's notification
 * suppression; the drivers poll either way).
 */
uint64_t virtio_common_features(void);
/* Lay out queue `index` with up to `num` entries in 3 pages at `mem`. */
int vq_setup(struct vdev *d, struct vq *q, uint16_t index, uint16_t num, uintptr_t mem);
void virtio_driver_ok(struct vdev *d);
void virtio_reset(struct vdev *d);

/* Publish a chain head on the avail ring (no notify). */
static inline void vq_push(struct vq *q, uint16_t head)
{
	q->avail->ring[q->avail_idx % q->num] = head;
	q->avail_idx++;
}

/*
 * Make pushed heads visible and notify the device, unless it said it need not:
 * avail_event with EVENT_IDX, else the used ring's NO_NOTIFY flag (set while the
 * device drains the queue), as Linux's virtqueue_kick_prepare decides.
 */
static inline void vq_kick(struct vq *q)
{
	mb();
	q->avail->idx = q->avail_idx;
	mb();
	if (!q->event_idx && (q->used->flags & VIRTQ_USED_F_NO_NOTIFY)) {
		q->notifies_skipped++;
		return;
	}
	if (q->event_idx) {
		/* avail_event sits after the used ring (virtio 1.2, 2.7.10). */
		uint16_t event = *(volatile uint16_t *)&q->used->ring[q->num];
		uint16_t new_idx = q->avail_idx, old_idx = q->kicked_idx;
		q->kicked_idx = new_idx;
		if ((uint16_t)(new_idx - event - 1) >= (uint16_t)(new_idx - old_idx)) {
			q->notifies_skipped++;
			return;
		}
	}
	q->notifies++;
	vwrite(q->dev, VMMIO_QUEUE_NOTIFY, q->index);
}

/* One used element if any: returns 1 and fills id/len. */
static inline int vq_poll(struct vq *q, uint32_t *id, uint32_t *len)
{
	if (q->used->idx == q->last_used)
		return 0;
	mb();
	volatile struct virtq_used_elem *e = &q->used->ring[q->last_used % q->num];
	*id = e->id;
	*len = e->len;
	q->last_used++;
	if (q->event_idx)	/* used_event: we poll, so ask for an interrupt as late as possible */
		*(volatile uint16_t *)&q->avail->ring[q->num] = (uint16_t)(q->last_used - 1);
	return 1;
}

/* Wait up to `timeout_ms` (TSC) for a used element.  Returns 1, or 0 on timeout. */
int vq_wait(struct vq *q, uint32_t *id, uint32_t *len, uint64_t timeout_ms);

/* Milliseconds to TSC ticks (needs tsc_khz(); falls back to 2.5 GHz). */
uint64_t ms_to_tsc(uint64_t ms);

#endif
