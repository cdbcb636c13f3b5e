/* Guest-side virtio-mmio transport; runs at CPL3 (MMIO through user pages). */
#include "virtio.h"

static const char *skip_to_word(const char *p)
{
	while (*p && *p != ' ')
		p++;
	while (*p == ' ')
		p++;
	return p;
}

int virtio_find(struct vdev *out, int max, int verbose)
{
	static const char key[] = "virtio_mmio.device=";
	const size_t kl = sizeof key - 1;
	int n = 0;
	for (const char *p = fw_cmdline; *p; p = skip_to_word(p)) {
		while (*p == ' ')
			p++;
		if (memcmp(p, key, kl) != 0)
			continue;
		const char *v = p + kl;
		size_t wl = 0;
		while (v[wl] && v[wl] != ' ')
			wl++;
		uint64_t size, base, irq = 0;
		int a = parse_u64(v, wl, &size);
		if (!a || v[a] != '@') {
			printf("virtio: bad virtio_mmio.device= entry\n");
			continue;
		}
		const char *b = v + a + 1;
		int c = parse_u64(b, wl - (size_t)(b - v), &base);
		if (!c) {
			printf("virtio: bad virtio_mmio.device= base\n");
			continue;
		}
		if (b[c] == ':')
			parse_u64(b + c + 1, wl - (size_t)(b + c + 1 - v), &irq);
		if (base >= (1ull << 32) || base & 3 || size < 0x100) {
			printf("virtio: unusable transport at 0x%lx size 0x%lx\n", base, size);
			continue;
		}
		int dup = 0;
		for (int i = 0; i < n; i++)
			dup |= out[i].base == base;
		if (dup)		/* e.g. QEMU with acpi=off appends its own copies */
			continue;
		if (n >= max)
			break;
		struct vdev *d = &out[n];
		memset(d, 0, sizeof *d);
		d->base = base;
		d->size = size;
		d->irq = (uint32_t)irq;
		uint32_t magic = vread(d, VMMIO_MAGIC);
		d->version = vread(d, VMMIO_VERSION);
		d->device_id = vread(d, VMMIO_DEVICE_ID);
		if (verbose)
			printf("virtio: transport 0x%lx irq %lu magic 0x%x version %u device %u\n",
			       base, irq, magic, d->version, d->device_id);
		if (magic != VIRTIO_MAGIC) {
			if (!verbose)
				printf("virtio: no virtio-mmio transport at 0x%lx (magic 0x%x)\n", base, magic);
			continue;
		}
		if (d->device_id == 0)		/* transport without a device */
			continue;
		n++;
	}
	return n;
}

void virtio_reset(struct vdev *d)
{
	vwrite(d, VMMIO_STATUS, 0);
	for (int i = 0; i < 1000000 && vread(d, VMMIO_STATUS) != 0; i++)
		cpu_relax();
}

int virtio_negotiate(struct vdev *d, uint64_t want)
{
	if (d->version != 2)
		return -1;
	virtio_reset(d);
	vwrite(d, VMMIO_STATUS, VSTAT_ACKNOWLEDGE);
	vwrite(d, VMMIO_STATUS, VSTAT_ACKNOWLEDGE | VSTAT_DRIVER);
	vwrite(d, VMMIO_DEVICE_FEATURES_SEL, 0);
	uint64_t f = vread(d, VMMIO_DEVICE_FEATURES);
	vwrite(d, VMMIO_DEVICE_FEATURES_SEL, 1);
	f |= (uint64_t)vread(d, VMMIO_DEVICE_FEATURES) << 32;
	d->device_features = f;
	if (!(f & (1ull << VIRTIO_F_VERSION_1)))
		return -2;
	d->features = f & (want | (1ull << VIRTIO_F_VERSION_1));
	vwrite(d, VMMIO_DRIVER_FEATURES_SEL, 0);
	vwrite(d, VMMIO_DRIVER_FEATURES, (uint32_t)d->features);
	vwrite(d, VMMIO_DRIVER_FEATURES_SEL, 1);
	vwrite(d, VMMIO_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
	vwrite(d, VMMIO_STATUS, VSTAT_ACKNOWLEDGE | VSTAT_DRIVER | VSTAT_FEATURES_OK);
	if (!(vread(d, VMMIO_STATUS) & VSTAT_FEATURES_OK))
		return -3;
	return 0;
}

int vq_setup(struct vdev *d, struct vq *q, uint16_t index, uint16_t num, uintptr_t mem)
{
	vwrite(d, VMMIO_QUEUE_SEL, index);
	if (vread(d, VMMIO_QUEUE_READY))
		return -1;
	uint32_t max = vread(d, VMMIO_QUEUE_NUM_MAX);
	if (max == 0)
		return -2;
	if (num > max)
		num = (uint16_t)max;
	if (num > 256)
		num = 256;
	memset((void *)mem, 0, 3 * 4096);
	q->dev = d;
	q->index = index;
	q->num = num;
	q->desc = (volatile struct virtq_desc *)mem;
	q->avail = (volatile struct virtq_avail *)(mem + 4096);
	q->used = (volatile struct virtq_used *)(mem + 8192);
	q->avail_idx = 0;
	q->last_used = 0;
	q->kicked_idx = 0;
	q->event_idx = !!(d->features & (1ull << VIRTIO_F_EVENT_IDX));
	q->notifies = q->notifies_skipped = 0;
	q->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;	/* we poll */
	vwrite(d, VMMIO_QUEUE_NUM, num);
	uint64_t a = (uint64_t)q->desc, b = (uint64_t)q->avail, c = (uint64_t)q->used;
	vwrite(d, VMMIO_QUEUE_DESC_LO, (uint32_t)a);
	vwrite(d, VMMIO_QUEUE_DESC_HI, (uint32_t)(a >> 32));
	vwrite(d, VMMIO_QUEUE_DRIVER_LO, (uint32_t)b);
	vwrite(d, VMMIO_QUEUE_DRIVER_HI, (uint32_t)(b >> 32));
	vwrite(d, VMMIO_QUEUE_DEVICE_LO, (uint32_t)c);
	vwrite(d, VMMIO_QUEUE_DEVICE_HI, (uint32_t)(c >> 32));
	vwrite(d, VMMIO_QUEUE_READY, 1);
	return 0;
}

uint64_t virtio_common_features(void)
{
	return cmdline_has("virtio.event_idx") ? 1ull << VIRTIO_F_EVENT_IDX : 0;
}

void virtio_driver_ok(struct vdev *d)
{
	vwrite(d, VMMIO_STATUS, VSTAT_ACKNOWLEDGE | VSTAT_DRIVER | VSTAT_FEATURES_OK | VSTAT_DRIVER_OK);
}

uint64_t ms_to_tsc(uint64_t ms)
{
	uint64_t k = tsc_khz();
	if (!k)
		k = 2500000;
	return ms * k;
}

int vq_wait(struct vq *q, uint32_t *id, uint32_t *len, uint64_t timeout_ms)
{
	uint64_t t0 = rdtsc(), limit = ms_to_tsc(timeout_ms);
	for (;;) {
		if (vq_poll(q, id, len))
			return 1;
		if (rdtsc() - t0 > limit)
			return 0;
		cpu_relax();
	}
}
