/*
 * hostile: posts malformed virtqueue chains to a virtio-blk device, one case
 * at a time on a freshly reset device, and prints what came back:
 *
 *   hostile: case NAME: status S len L         the device completed it
 *   hostile: case NAME: no completion          nothing within 300 ms
 *   ... plus ", NEEDS_RESET" when the device set DEVICE_NEEDS_RESET
 *   ... plus ", ACCEPTED" when status 0 came back for a request that
 *       cannot be valid (a VMM bug unless noted in docs/firmware.md)
 *
 * then a valid write + read-back, which must work:
 *   hostile: PASS valid request after N hostile cases   (or hostile: FAIL ...)
 */
#include "hostile.h"

const int fw_run_in_user_mode = 1;

struct vdev *dev;
struct vq q;
int indirect_ok;
volatile uint8_t *status = (volatile uint8_t *)MEM_STATUS;
struct hdr *hdr = (struct hdr *)MEM_HDR;

static int dev_init(void)
{
	int r = virtio_negotiate(dev, (1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_BLK_F_SEG_MAX));
	if (r)
		return r;
	indirect_ok = !!(dev->features & (1ull << VIRTIO_F_INDIRECT_DESC));
	if (vq_setup(dev, &q, 0, 256, MEM_Q))
		return -10;
	virtio_driver_ok(dev);
	return 0;
}

void set(volatile struct virtq_desc *d, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

/* A request header + status pair, the data in between is up to the case. */
void header(uint32_t type, uint64_t sector)
{
	hdr->type = type;
	hdr->reserved = 0;
	hdr->sector = sector;
	*status = 0xee;
}

int cases, accepted_bad;

/* Push head(s), kick, wait, report. */
void run(const char *name, uint16_t head, int must_fail)
{
	vq_push(&q, head);
	vq_kick(&q);
	uint32_t id, len;
	int done = vq_wait(&q, &id, &len, 300);
	uint32_t ds = vread(dev, VMMIO_STATUS);
	char line[200];
	int n;
	if (done)
		n = snprintf(line, sizeof line, "hostile: case %s: status %u len %u", name, *status, len);
	else
		n = snprintf(line, sizeof line, "hostile: case %s: no completion", name);
	if (ds & VSTAT_NEEDS_RESET)
		n += snprintf(line + n, sizeof line - (size_t)n, ", NEEDS_RESET");
	if (done && *status == 0 && must_fail) {
		n += snprintf(line + n, sizeof line - (size_t)n, ", ACCEPTED");
		accepted_bad++;
	}
	printf("%s\n", line);
	cases++;
}

static void reset_between(void)
{
	int r = dev_init();
	if (r)
		printf("hostile: device re-initialisation failed (%d)\n", r);
}

static void c_loop(void)
{
	header(T_IN, 0);
	set(&q.desc[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set(&q.desc[1], MEM_BUF, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 0);
	run("descriptor-loop", 0, 1);
}

static void c_self_loop(void)
{
	header(T_IN, 0);
	set(&q.desc[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 0);
	run("self-loop", 0, 1);
}

static void c_next_oob(void)
{
	header(T_IN, 0);
	set(&q.desc[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set(&q.desc[1], MEM_BUF, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 0xfff0);
	run("next-index-out-of-range", 0, 1);
}

static void c_head_oob(void)
{
	header(T_IN, 0);
	run("head-index-out-of-range", 300, 1);
}

static void three(uint32_t type, uint64_t a0, uint32_t l0, uint16_t f0,
		  uint64_t a1, uint32_t l1, uint16_t f1, uint64_t a2, uint32_t l2, uint16_t f2)
{
	header(type, 0);
	set(&q.desc[0], a0, l0, f0 | VIRTQ_DESC_F_NEXT, 1);
	set(&q.desc[1], a1, l1, f1 | VIRTQ_DESC_F_NEXT, 2);
	set(&q.desc[2], a2, l2, f2, 0);
}

static void c_data_outside_ram(void)
{
	three(T_IN, MEM_HDR, 16, 0, OUTSIDE_RAM, 512, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("data-outside-ram", 0, 1);
}

static void c_write_from_outside_ram(void)
{
	three(T_OUT, MEM_HDR, 16, 0, OUTSIDE_RAM, 512, 0, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("write-from-outside-ram", 0, 1);
}

static void c_data_in_hole(void)
{
	three(T_IN, MEM_HDR, 16, 0, IN_HOLE, 512, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("data-in-mmio-hole", 0, 1);
}

static void c_data_wraps(void)
{
	three(T_IN, MEM_HDR, 16, 0, 0xfffffffffffff000ull, 0x2000, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("data-address-wraps", 0, 1);
}

static void c_data_crosses_ram_end(void)
{
	/* Starts in RAM (below 64 MiB... wherever RAM ends) and runs 1 GiB further. */
	three(T_IN, MEM_HDR, 16, 0, MEM_BUF, 0x40000000, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("data-runs-past-ram-end", 0, 1);
}

static void c_header_outside_ram(void)
{
	three(T_IN, OUTSIDE_RAM, 16, 0, MEM_BUF, 512, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("header-outside-ram", 0, 1);
}

static void c_status_outside_ram(void)
{
	three(T_IN, MEM_HDR, 16, 0, MEM_BUF, 512, VIRTQ_DESC_F_WRITE, OUTSIDE_RAM, 1, VIRTQ_DESC_F_WRITE);
	run("status-outside-ram", 0, 1);
}

static void c_zero_len_data(void)
{
	three(T_IN, MEM_HDR, 16, 0, MEM_BUF, 0, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("zero-length-data", 0, 0);
}

static void c_zero_len_status(void)
{
	three(T_IN, MEM_HDR, 16, 0, MEM_BUF, 512, VIRTQ_DESC_F_WRITE, MEM_STATUS, 0, VIRTQ_DESC_F_WRITE);
	run("zero-length-status", 0, 1);
}

static void c_short_header(void)
{
	three(T_IN, MEM_HDR, 8, 0, MEM_BUF, 512, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("short-header", 0, 1);
}

static void c_odd_data_len(void)
{
	three(T_IN, MEM_HDR, 16, 0, MEM_BUF, 100, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("data-not-sector-multiple", 0, 1);
}

static void c_read_into_readonly(void)
{
	three(T_IN, MEM_HDR, 16, 0, MEM_BUF, 512, 0, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("wrong-direction-read-into-readonly-buffer", 0, 1);
}

static void c_status_readonly(void)
{
	three(T_IN, MEM_HDR, 16, 0, MEM_BUF, 512, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, 0);
	run("wrong-direction-status-readonly", 0, 1);
}

static void c_header_writable(void)
{
	three(T_IN, MEM_HDR, 16, VIRTQ_DESC_F_WRITE, MEM_BUF, 512, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	run("wrong-direction-header-writable", 0, 1);
}

static void c_readable_after_writable(void)
{
	/* OUT request whose data (device-readable) comes after a writable one. */
	header(T_OUT, 0);
	set(&q.desc[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set(&q.desc[1], MEM_BUF2, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set(&q.desc[2], MEM_BUF, 512, VIRTQ_DESC_F_NEXT, 3);
	set(&q.desc[3], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	run("readable-after-writable", 0, 1);
}

static void c_header_only(void)
{
	header(T_IN, 0);
	set(&q.desc[0], MEM_HDR, 16, 0, 0);
	run("header-only-no-status", 0, 1);
}

static void c_unknown_type(void)
{
	three(0x7777, MEM_HDR, 16, 0, MEM_BUF, 512, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	hdr->type = 0x7777;
	run("unknown-request-type", 0, 1);
}

static void c_sector_past_end(void)
{
	three(T_IN, MEM_HDR, 16, 0, MEM_BUF, 512, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	hdr->sector = 0x7fffffffffffffffull;
	run("sector-far-past-end", 0, 1);
}

static void c_whole_queue_chain(void)
{
	/* Header + (num - 2) data descriptors + status: exactly the queue size. */
	uint16_t n = q.num;
	header(T_IN, 0);
	set(&q.desc[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	for (uint16_t i = 1; i < n - 1; i++)
		set(&q.desc[i], MEM_BUF + (uint64_t)(i - 1) * 512 % 0x40000, 512,
		    VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (uint16_t)(i + 1));
	set(&q.desc[n - 1], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	run("chain-as-long-as-queue", 0, 0);
}

static void c_too_many_data_descs(void)
{
	/* More data segments than seg_max (if known), still within the queue. */
	uint32_t seg_max = dev->features & (1ull << VIRTIO_BLK_F_SEG_MAX) ? vread(dev, VMMIO_CONFIG + 12) : 0;
	if (!seg_max || seg_max + 2 > q.num) {
		printf("hostile: case more-segments-than-seg-max: skipped (seg_max %u, queue %u)\n", seg_max, q.num);
		return;
	}
	uint16_t n = (uint16_t)(seg_max + 3 <= q.num ? seg_max + 3 : q.num);
	header(T_IN, 0);
	set(&q.desc[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	for (uint16_t i = 1; i < n - 1; i++)
		set(&q.desc[i], MEM_BUF + (uint64_t)(i - 1) * 512 % 0x40000, 512,
		    VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (uint16_t)(i + 1));
	set(&q.desc[n - 1], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	run("more-segments-than-seg-max", 0, 0);
}

volatile struct virtq_desc *ind = (volatile struct virtq_desc *)MEM_IND;

static void ind_three(void)
{
	header(T_IN, 0);
	set(&ind[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set(&ind[1], MEM_BUF, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set(&ind[2], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
}

int need_indirect(const char *name)
{
	if (!indirect_ok)
		printf("hostile: case %s: skipped (VIRTIO_F_INDIRECT_DESC not offered)\n", name);
	return indirect_ok;
}

static void c_indirect_valid(void)
{
	if (!need_indirect("indirect-valid"))
		return;
	ind_three();
	set(&q.desc[0], MEM_IND, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	run("indirect-valid", 0, 0);
}

static void c_indirect_bad_len(void)
{
	if (!need_indirect("indirect-length-not-multiple-of-16"))
		return;
	ind_three();
	set(&q.desc[0], MEM_IND, 3 * 16 + 5, VIRTQ_DESC_F_INDIRECT, 0);
	run("indirect-length-not-multiple-of-16", 0, 1);
}

static void c_indirect_zero_len(void)
{
	if (!need_indirect("indirect-zero-length"))
		return;
	ind_three();
	set(&q.desc[0], MEM_IND, 0, VIRTQ_DESC_F_INDIRECT, 0);
	run("indirect-zero-length", 0, 1);
}

static void c_indirect_outside_ram(void)
{
	if (!need_indirect("indirect-table-outside-ram"))
		return;
	set(&q.desc[0], OUTSIDE_RAM, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	header(T_IN, 0);
	run("indirect-table-outside-ram", 0, 1);
}

static void c_indirect_nested(void)
{
	if (!need_indirect("indirect-nested"))
		return;
	ind_three();
	volatile struct virtq_desc *outer = ind + 64;
	set(&outer[0], MEM_IND, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	set(&q.desc[0], (uint64_t)outer, 16, VIRTQ_DESC_F_INDIRECT, 0);
	run("indirect-nested", 0, 1);
}

static void c_indirect_next_oob(void)
{
	if (!need_indirect("indirect-next-out-of-table"))
		return;
	ind_three();
	ind[1].next = 7;
	set(&q.desc[0], MEM_IND, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	run("indirect-next-out-of-table", 0, 1);
}

static void c_indirect_loop(void)
{
	if (!need_indirect("indirect-loop"))
		return;
	ind_three();
	ind[1].next = 0;
	ind[2].flags = VIRTQ_DESC_F_WRITE;
	set(&q.desc[0], MEM_IND, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	run("indirect-loop", 0, 1);
}

static void c_indirect_with_next(void)
{
	if (!need_indirect("indirect-with-next-flag"))
		return;
	ind_three();
	set(&q.desc[0], MEM_IND, 3 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	set(&q.desc[1], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	run("indirect-with-next-flag", 0, 1);
}

static void c_indirect_too_long(void)
{
	if (!need_indirect("indirect-longer-than-queue"))
		return;
	/* 1024 entries (> queue size), a well-formed chain otherwise. */
	uint16_t n = 1024;
	header(T_IN, 0);
	set(&ind[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	for (uint16_t i = 1; i < n - 1; i++)
		set(&ind[i], MEM_BUF + (uint64_t)(i - 1) * 512 % 0x40000, 512,
		    VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, (uint16_t)(i + 1));
	set(&ind[n - 1], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	set(&q.desc[0], MEM_IND, (uint32_t)n * 16, VIRTQ_DESC_F_INDIRECT, 0);
	run("indirect-longer-than-queue", 0, 1);
}

static void c_avail_idx_jump(void)
{
	/* avail.idx more than the queue size ahead of what the device has seen. */
	three(T_IN, MEM_HDR, 16, 0, MEM_BUF, 512, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	for (int i = 0; i < q.num; i++)
		q.avail->ring[i] = 0;
	q.avail_idx = (uint16_t)(q.num + 5);
	vq_kick(&q);
	uint32_t id, len;
	int done = vq_wait(&q, &id, &len, 300);
	uint32_t ds = vread(dev, VMMIO_STATUS);
	printf("hostile: case avail-index-jump: %s%s\n", done ? "completions came back" : "no completion",
	       ds & VSTAT_NEEDS_RESET ? ", NEEDS_RESET" : "");
	cases++;
}

static void c_queue_outside_ram(void)
{
	/* Point the descriptor table outside RAM, then notify. */
	virtio_reset(dev);
	int r = virtio_negotiate(dev, 0);
	if (r) {
		printf("hostile: case queue-outside-ram: negotiation failed (%d)\n", r);
		return;
	}
	vwrite(dev, VMMIO_QUEUE_SEL, 0);
	vwrite(dev, VMMIO_QUEUE_NUM, 16);
	vwrite(dev, VMMIO_QUEUE_DESC_LO, 0);
	vwrite(dev, VMMIO_QUEUE_DESC_HI, (uint32_t)(OUTSIDE_RAM >> 32));
	vwrite(dev, VMMIO_QUEUE_DRIVER_LO, (uint32_t)(MEM_Q + 4096));
	vwrite(dev, VMMIO_QUEUE_DRIVER_HI, 0);
	vwrite(dev, VMMIO_QUEUE_DEVICE_LO, (uint32_t)(MEM_Q + 8192));
	vwrite(dev, VMMIO_QUEUE_DEVICE_HI, 0);
	memset((void *)(MEM_Q + 4096), 0, 8192);
	vwrite(dev, VMMIO_QUEUE_READY, 1);
	virtio_driver_ok(dev);
	volatile struct virtq_avail *av = (volatile struct virtq_avail *)(MEM_Q + 4096);
	volatile struct virtq_used *us = (volatile struct virtq_used *)(MEM_Q + 8192);
	av->ring[0] = 0;
	mb();
	av->idx = 1;
	mb();
	vwrite(dev, VMMIO_QUEUE_NOTIFY, 0);
	uint64_t t0 = rdtsc(), lim = ms_to_tsc(300);
	while (us->idx == 0 && rdtsc() - t0 < lim)
		cpu_relax();
	uint32_t ds = vread(dev, VMMIO_STATUS);
	printf("hostile: case queue-outside-ram: %s%s\n", us->idx ? "completion came back" : "no completion",
	       ds & VSTAT_NEEDS_RESET ? ", NEEDS_RESET" : "");
	cases++;
}

static void c_queue_size_not_pow2(void)
{
	virtio_reset(dev);
	int r = virtio_negotiate(dev, 0);
	if (r)
		return;
	vwrite(dev, VMMIO_QUEUE_SEL, 0);
	vwrite(dev, VMMIO_QUEUE_NUM, 100);
	vwrite(dev, VMMIO_QUEUE_DESC_LO, (uint32_t)MEM_Q);
	vwrite(dev, VMMIO_QUEUE_DESC_HI, 0);
	vwrite(dev, VMMIO_QUEUE_DRIVER_LO, (uint32_t)(MEM_Q + 4096));
	vwrite(dev, VMMIO_QUEUE_DRIVER_HI, 0);
	vwrite(dev, VMMIO_QUEUE_DEVICE_LO, (uint32_t)(MEM_Q + 8192));
	vwrite(dev, VMMIO_QUEUE_DEVICE_HI, 0);
	vwrite(dev, VMMIO_QUEUE_READY, 1);
	virtio_driver_ok(dev);
	uint32_t ready = vread(dev, VMMIO_QUEUE_READY), ds = vread(dev, VMMIO_STATUS);
	printf("hostile: case queue-size-100 (not a power of 2): queue ready %u, device status 0x%x%s\n",
	       ready, ds, ds & VSTAT_NEEDS_RESET ? ", NEEDS_RESET" : "");
	cases++;
}

static const case_fn all_cases[] = {
	c_loop, c_self_loop, c_next_oob, c_head_oob,
	c_data_outside_ram, c_write_from_outside_ram, c_data_in_hole, c_data_wraps, c_data_crosses_ram_end,
	c_header_outside_ram, c_status_outside_ram,
	c_zero_len_data, c_zero_len_status, c_short_header, c_odd_data_len,
	c_read_into_readonly, c_status_readonly, c_header_writable, c_readable_after_writable,
	c_header_only, c_unknown_type, c_sector_past_end,
	c_whole_queue_chain, c_too_many_data_descs,
	c_sum_over_4gib, c_sum_over_4gib_indirect, c_sum_exactly_4gib, c_overlapping_buffers, c_data_over_header_and_status,
	c_indirect_valid, c_indirect_bad_len, c_indirect_zero_len, c_indirect_outside_ram,
	c_indirect_nested, c_indirect_next_oob, c_indirect_loop, c_indirect_with_next, c_indirect_too_long,
	c_indirect_whole_queue,
	c_avail_idx_jump, c_queue_outside_ram, c_queue_size_not_pow2,
	c_queue_num_after_driver_ok, c_notification_storm, c_reset_mid_request, c_giant_config_write,
};

static int valid_request(void)
{
	uint8_t *w = (uint8_t *)MEM_BUF, *r = (uint8_t *)MEM_BUF2;
	for (int i = 0; i < 4096; i++)
		w[i] = (uint8_t)(i * 7 + 3);
	memset(r, 0, 4096);
	three(T_OUT, MEM_HDR, 16, 0, MEM_BUF, 4096, 0, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	vq_push(&q, 0);
	vq_kick(&q);
	uint32_t id, len;
	if (!vq_wait(&q, &id, &len, 5000) || *status != 0)
		return -1;
	three(T_IN, MEM_HDR, 16, 0, MEM_BUF2, 4096, VIRTQ_DESC_F_WRITE, MEM_STATUS, 1, VIRTQ_DESC_F_WRITE);
	vq_push(&q, 0);
	vq_kick(&q);
	if (!vq_wait(&q, &id, &len, 5000) || *status != 0)
		return -2;
	return memcmp(w, r, 4096) ? -3 : 0;
}

int main(void)
{
	static struct vdev devs[VIRTIO_MAX_DEVICES];
	int n = virtio_find(devs, VIRTIO_MAX_DEVICES, cmdline_has("fw.debug"));
	for (int i = 0; i < n && !dev; i++)
		if (devs[i].device_id == VIRTIO_ID_BLOCK)
			dev = &devs[i];
	if (!dev) {
		printf("hostile: FAIL no virtio-blk device (give virtio_mmio.device=<size>@<base>:<irq>)\n");
		printf("hostile: done\n");
		return 0;
	}
	int r = dev_init();
	if (r) {
		printf("hostile: FAIL device set-up (%d)\n", r);
		printf("hostile: done\n");
		return 0;
	}
	printf("hostile: device at 0x%lx, queue size %u, indirect %s\n", dev->base, q.num, indirect_ok ? "yes" : "no");
	for (size_t i = 0; i < sizeof all_cases / sizeof all_cases[0]; i++) {
		reset_between();
		all_cases[i]();
	}
	reset_between();
	r = valid_request();
	if (r)
		printf("hostile: FAIL valid request after %d hostile cases (step %d, status %u, device status 0x%x)\n",
		       cases, -r, *status, vread(dev, VMMIO_STATUS));
	else
		printf("hostile: PASS valid request after %d hostile cases (%d bad requests accepted)\n",
		       cases, accepted_bad);
	virtio_reset(dev);
	printf("hostile: done\n");
	return 0;
}
