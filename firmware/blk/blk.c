/*
 * blk: virtio-blk driver test over virtio-mmio (version 2), at CPL3.
 *
 * Devices come from `virtio_mmio.device=` on the command line.  Every
 * virtio-blk device found is exercised (GET_ID, patterned writes, FLUSH,
 * read-back, read past the end, DISCARD and WRITE_ZEROES when offered);
 * `blk.bench=seq|rand|seqwrite|randwrite` instead measures throughput on the
 * first one.  See docs/firmware.md for the output and the on-disk pattern.
 */
#include "blk.h"


const int fw_run_in_user_mode = 1;

int checks, failures;
static uint64_t seed;

static void pass(const char *fmt, uint64_t a, uint64_t b)
{
	char buf[160];
	snprintf(buf, sizeof buf, fmt, a, b);
	printf("blk: PASS %s\n", buf);
	checks++;
}

static void fail(const char *fmt, uint64_t a, uint64_t b)
{
	char buf[160];
	snprintf(buf, sizeof buf, fmt, a, b);
	printf("blk: FAIL %s\n", buf);
	checks++;
	failures++;
}

static uint64_t pattern(uint64_t sector, unsigned word)
{
	return (sector * 0x9E3779B97F4A7C15ull) ^ ((word + 1) * 0xC2B2AE3D27D4EB4Full) ^ seed;
}

static void fill_pattern(uint8_t *buf, uint64_t sector, uint32_t nsec)
{
	uint64_t *w = (uint64_t *)buf;
	for (uint32_t s = 0; s < nsec; s++)
		for (unsigned i = 0; i < SECTOR / 8; i++)
			*w++ = pattern(sector + s, i);
}

/* Returns the byte offset of the first mismatch, or -1. */
static int64_t check_pattern(const uint8_t *buf, uint64_t sector, uint32_t nsec, int zero)
{
	const uint64_t *w = (const uint64_t *)buf;
	for (uint32_t s = 0; s < nsec; s++)
		for (unsigned i = 0; i < SECTOR / 8; i++, w++)
			if (*w != (zero ? 0 : pattern(sector + s, i)))
				return (int64_t)((const uint8_t *)w - buf);
	return -1;
}

/*
 * Build request `slot` (descriptors 4*slot .. 4*slot+nseg+1 must fit in the
 * queue): header, `len` bytes at `buf` in `nseg` pieces, status.  Pushes it.
 */
void blk_submit(struct blk *b, unsigned slot, uint32_t type, uint64_t sector,
		       void *buf, uint32_t len, unsigned nseg, int device_writes)
{
	unsigned per = b->per;
	uint16_t first = (uint16_t)(per * slot), di = first;
	struct blk_hdr *h = slot_hdr(b, slot);
	h->type = type;
	h->reserved = 0;
	h->sector = sector;
	*slot_status(b, slot) = NO_STATUS;
	volatile struct virtq_desc *dt = b->q.desc;
	dt[di].addr = (uint64_t)h;
	dt[di].len = sizeof *h;
	dt[di].flags = VIRTQ_DESC_F_NEXT;
	dt[di].next = (uint16_t)(di + 1);
	di++;
	if (len) {
		if (nseg < 1)
			nseg = 1;
		if (nseg > per - 2)
			nseg = per - 2;
		uint32_t piece = (len / nseg + SECTOR - 1) / SECTOR * SECTOR, off = 0;
		if (type != VIRTIO_BLK_T_IN && type != VIRTIO_BLK_T_OUT)
			piece = len;
		while (off < len) {
			uint32_t n = len - off < piece ? len - off : piece;
			dt[di].addr = (uint64_t)buf + off;
			dt[di].len = n;
			dt[di].flags = VIRTQ_DESC_F_NEXT | (device_writes ? VIRTQ_DESC_F_WRITE : 0);
			dt[di].next = (uint16_t)(di + 1);
			di++;
			off += n;
		}
	}
	dt[di].addr = (uint64_t)slot_status(b, slot);
	dt[di].len = 1;
	dt[di].flags = VIRTQ_DESC_F_WRITE;
	dt[di].next = 0;
	vq_push(&b->q, first);
}

/* Request timeout, blk.timeout= (ms): snapshot tests raise it, since the TSC
 * a restored guest reads may have advanced by the time the snapshot was stored. */
static uint64_t timeout_ms = 10000;

/* Synchronous request on slot 0: returns the status byte, or -1 on timeout. */
static int blk_sync(struct blk *b, uint32_t type, uint64_t sector, void *buf, uint32_t len,
		    unsigned nseg, int device_writes)
{
	if (b->timed_out)
		return -1;
	blk_submit(b, 0, type, sector, buf, len, nseg, device_writes);
	vq_kick(&b->q);
	uint32_t id, ulen;
	if (!vq_wait(&b->q, &id, &ulen, timeout_ms)) {
		b->timed_out = 1;
		printf("blk: FAIL request type %u sector %lu timed out (device status 0x%x)\n",
		       type, sector, vread(b->d, VMMIO_STATUS));
		checks++;
		failures++;
		return -1;
	}
	return *slot_status(b, 0);
}

static int blk_open(struct blk *b, struct vdev *d, uintptr_t mem)
{
	memset(b, 0, sizeof *b);
	b->d = d;
	b->mem = mem;
	uint64_t want = (1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
			(1ull << VIRTIO_BLK_F_RO) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
			(1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_DISCARD) |
			(1ull << VIRTIO_BLK_F_WRITE_ZEROES) | virtio_common_features();
	int r = virtio_negotiate(d, want);
	if (r) {
		printf("blk: FAIL device 0x%lx feature negotiation (step %d)\n", d->base, r);
		return -1;
	}
	r = vq_setup(d, &b->q, 0, 256, mem);
	if (r) {
		printf("blk: FAIL device 0x%lx queue set-up (%d)\n", d->base, r);
		return -1;
	}
	virtio_driver_ok(d);
	b->per = b->q.num >= 16 ? 16 : b->q.num;
	uintptr_t cfg = d->base + VMMIO_CONFIG;
	b->capacity = mmio_read32(cfg) | (uint64_t)mmio_read32(cfg + 4) << 32;
	b->size_max = d->features & (1ull << VIRTIO_BLK_F_SIZE_MAX) ? mmio_read32(cfg + 8) : 0;
	b->seg_max = d->features & (1ull << VIRTIO_BLK_F_SEG_MAX) ? mmio_read32(cfg + 12) : 0;
	b->blk_size = d->features & (1ull << VIRTIO_BLK_F_BLK_SIZE) ? mmio_read32(cfg + 20) : 512;
	b->ro = !!(d->features & (1ull << VIRTIO_BLK_F_RO));
	return 0;
}

static int has(struct blk *b, int bit) { return !!(b->d->features & (1ull << bit)); }

unsigned segs(struct blk *b, unsigned want)
{
	if (b->seg_max && want > b->seg_max)
		want = b->seg_max;
	return want ? want : 1;
}

static int dwz(struct blk *b, uint32_t type, uint64_t sector, uint32_t n)
{
	struct blk_dwz *seg = (struct blk_dwz *)(b->mem + OFF_MISC + 64);
	seg->sector = sector;
	seg->num_sectors = n;
	seg->flags = 0;
	return blk_sync(b, type, 0, seg, sizeof *seg, 1, 0);
}

static void blk_test(struct blk *b)
{
	uint8_t *wbuf = data(b), *rbuf = data(b) + DATA_SIZE / 2;
	uint64_t cap = b->capacity;

	/* GET_ID */
	uint8_t *id = (uint8_t *)(b->mem + OFF_MISC);
	memset(id, 0, 21);
	int st = blk_sync(b, VIRTIO_BLK_T_GET_ID, 0, id, 20, 1, 1);
	if (st == VIRTIO_BLK_S_OK) {
		for (int i = 0; i < 20 && id[i]; i++)
			if (id[i] < 0x20 || id[i] > 0x7e)
				id[i] = '?';
		printf("blk: PASS get_id \"%s\"\n", (char *)id);
		checks++;
	} else if (st == VIRTIO_BLK_S_UNSUPP) {
		pass("get_id unsupported (status %ld)", (uint64_t)st, 0);
	} else {
		fail("get_id status %ld", (uint64_t)(int64_t)st, 0);
	}

	uint32_t na = cap < 256 ? (uint32_t)cap : 256;		/* region A: [0, na) */
	uint32_t nt = cap >= 512 + 8 ? 8 : 0;			/* tail: last 8 sectors */
	uint64_t tail = cap - nt;

	if (b->ro) {
		fill_pattern(wbuf, 0, 1);
		st = blk_sync(b, VIRTIO_BLK_T_OUT, 0, wbuf, SECTOR, 1, 0);
		if (st == VIRTIO_BLK_S_IOERR)
			pass("write to read-only disk rejected (status %ld)", (uint64_t)st, 0);
		else
			fail("write to read-only disk: status %ld, want 1", (uint64_t)(int64_t)st, 0);
	} else {
		int ok = 1;
		for (uint32_t s = 0; s < na && ok; s += 64) {
			uint32_t n = na - s < 64 ? na - s : 64;
			fill_pattern(wbuf + s * SECTOR, s, n);
			st = blk_sync(b, VIRTIO_BLK_T_OUT, s, wbuf + s * SECTOR, n * SECTOR, segs(b, 4), 0);
			if (st != VIRTIO_BLK_S_OK) {
				fail("write sector %lu status %ld", s, (uint64_t)(int64_t)st);
				ok = 0;
			}
		}
		if (ok)
			pass("write %lu sectors at 0", na, 0);
		if (nt) {
			fill_pattern(wbuf, tail, nt);
			st = blk_sync(b, VIRTIO_BLK_T_OUT, tail, wbuf, nt * SECTOR, segs(b, 2), 0);
			if (st == VIRTIO_BLK_S_OK)
				pass("write %lu sectors at end (sector %lu)", nt, tail);
			else
				fail("write at end status %ld", (uint64_t)(int64_t)st, 0);
		}
		if (has(b, VIRTIO_BLK_F_FLUSH)) {
			st = blk_sync(b, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 0, 0);
			if (st == VIRTIO_BLK_S_OK)
				pass("flush", 0, 0);
			else
				fail("flush status %ld", (uint64_t)(int64_t)st, 0);
		} else {
			printf("blk: SKIP flush (not offered)\n");
		}
	}

	/* Read back (on a read-only disk: whatever is there, checked against the pattern). */
	memset(rbuf, 0xa5, na * SECTOR);
	int ok = 1;
	for (uint32_t s = 0; s < na && ok; s += 32) {
		uint32_t n = na - s < 32 ? na - s : 32;
		st = blk_sync(b, VIRTIO_BLK_T_IN, s, rbuf + s * SECTOR, n * SECTOR, segs(b, 3), 1);
		if (st != VIRTIO_BLK_S_OK) {
			fail("read sector %lu status %ld", s, (uint64_t)(int64_t)st);
			ok = 0;
		}
	}
	if (ok) {
		int64_t bad = check_pattern(rbuf, 0, na, 0);
		if (bad < 0)
			pass("read-verify %lu sectors at 0", na, 0);
		else if (b->ro)
			printf("blk: INFO read-only disk does not hold the pattern (first difference at byte %ld)\n", bad);
		else
			fail("read-verify mismatch at byte %lu of %lu", (uint64_t)bad, (uint64_t)na * SECTOR);
	}
	if (nt && !b->ro) {
		memset(rbuf, 0xa5, nt * SECTOR);
		st = blk_sync(b, VIRTIO_BLK_T_IN, tail, rbuf, nt * SECTOR, 1, 1);
		int64_t bad = st == VIRTIO_BLK_S_OK ? check_pattern(rbuf, tail, nt, 0) : 0;
		if (st == VIRTIO_BLK_S_OK && bad < 0)
			pass("read-verify %lu sectors at end (sector %lu)", nt, tail);
		else
			fail("read-verify at end: status %ld mismatch at %ld", (uint64_t)(int64_t)st, (uint64_t)bad);
	}

	/* A read that crosses the end of the disk must fail. */
	st = blk_sync(b, VIRTIO_BLK_T_IN, cap - 1, rbuf, 2 * SECTOR, 1, 1);
	if (st == VIRTIO_BLK_S_IOERR)
		pass("read across end rejected (status %ld)", (uint64_t)st, 0);
	else
		fail("read across end: status %ld, want 1", (uint64_t)(int64_t)st, 0);

	if (!b->ro && cap >= 512) {
		if (has(b, VIRTIO_BLK_F_DISCARD)) {
			st = dwz(b, VIRTIO_BLK_T_DISCARD, 256, 128);
			if (st == VIRTIO_BLK_S_OK)
				pass("discard 128 sectors at %lu", 256, 0);
			else
				fail("discard status %ld", (uint64_t)(int64_t)st, 0);
		} else {
			printf("blk: SKIP discard (not offered)\n");
		}
		if (has(b, VIRTIO_BLK_F_WRITE_ZEROES)) {
			fill_pattern(wbuf, 384, 64);
			st = blk_sync(b, VIRTIO_BLK_T_OUT, 384, wbuf, 64 * SECTOR, 1, 0);
			int st2 = st == VIRTIO_BLK_S_OK ? dwz(b, VIRTIO_BLK_T_WRITE_ZEROES, 384, 64) : -2;
			memset(rbuf, 0xa5, 64 * SECTOR);
			int st3 = st2 == VIRTIO_BLK_S_OK ? blk_sync(b, VIRTIO_BLK_T_IN, 384, rbuf, 64 * SECTOR, 1, 1) : -2;
			if (st3 == VIRTIO_BLK_S_OK && check_pattern(rbuf, 384, 64, 1) < 0)
				pass("write-zeroes 64 sectors at %lu", 384, 0);
			else
				fail("write-zeroes: status %ld, read-back status %ld or not zero",
				     (uint64_t)(int64_t)st2, (uint64_t)(int64_t)st3);
		} else {
			printf("blk: SKIP write-zeroes (not offered)\n");
		}
	}
}

/*
 * Many requests in flight at once (completions may come back in any order):
 * write 256 blocks of 8 sectors at sector 1024 with up to 16 in flight, then
 * read them back the same way and check the pattern.
 */
#define CONC_FIRST 1024
#define CONC_BLOCKS 256
#define CONC_SECTORS 8

static int blk_pipeline(struct blk *b, uint32_t type)
{
	unsigned slots = b->q.num / b->per;
	if (slots > 16)
		slots = 16;
	uint8_t *wbuf = data(b), *rbuf = data(b) + DATA_SIZE / 2;
	int16_t slot_block[16];
	unsigned next = 0, inflight = 0, done = 0, bad = 0;
	uint32_t bytes = CONC_SECTORS * SECTOR;
	for (unsigned s = 0; s < slots; s++)
		slot_block[s] = -1;
	uint64_t t0 = rdtsc(), limit = ms_to_tsc(10000);
	while (done < CONC_BLOCKS) {
		int pushed = 0;
		for (unsigned s = 0; s < slots && next < CONC_BLOCKS; s++) {
			if (slot_block[s] >= 0)
				continue;
			uint64_t sector = CONC_FIRST + (uint64_t)next * CONC_SECTORS;
			uint8_t *buf;
			if (type == VIRTIO_BLK_T_OUT) {
				buf = wbuf + s * bytes;
				fill_pattern(buf, sector, CONC_SECTORS);
			} else {
				buf = rbuf + next * bytes;
			}
			blk_submit(b, s, type, sector, buf, bytes, 1, type == VIRTIO_BLK_T_IN);
			slot_block[s] = (int16_t)next++;
			inflight++;
			pushed = 1;
		}
		if (pushed)
			vq_kick(&b->q);
		uint32_t id, len;
		while (vq_poll(&b->q, &id, &len)) {
			unsigned s = id / b->per;
			if (s >= slots || slot_block[s] < 0 || id % b->per) {
				fail("pipeline: unexpected used id %lu", id, 0);
				b->timed_out = 1;
				return -1;
			}
			if (*slot_status(b, s) != VIRTIO_BLK_S_OK)
				bad++;
			slot_block[s] = -1;
			inflight--;
			done++;
			t0 = rdtsc();
		}
		if (rdtsc() - t0 > limit) {
			fail("pipeline: stalled with %lu requests in flight", inflight, 0);
			b->timed_out = 1;
			return -1;
		}
	}
	return (int)bad;
}

static void blk_concurrent(struct blk *b)
{
	if (b->capacity < CONC_FIRST + CONC_BLOCKS * CONC_SECTORS || b->ro || b->timed_out)
		return;
	int bad = blk_pipeline(b, VIRTIO_BLK_T_OUT);
	if (bad < 0)
		return;
	if (bad) {
		fail("pipelined writes: %lu of %lu failed", (uint64_t)bad, CONC_BLOCKS);
		return;
	}
	memset(data(b) + DATA_SIZE / 2, 0xa5, CONC_BLOCKS * CONC_SECTORS * SECTOR);
	bad = blk_pipeline(b, VIRTIO_BLK_T_IN);
	if (bad < 0)
		return;
	int64_t off = bad ? 0 : check_pattern(data(b) + DATA_SIZE / 2, CONC_FIRST, CONC_BLOCKS * CONC_SECTORS, 0);
	if (bad || off >= 0)
		fail("pipelined read-back: %lu failed, first mismatch at byte %ld", (uint64_t)bad, (uint64_t)off);
	else
		pass("pipelined write+read of %lu 4 KiB blocks at sector 1024, 16 in flight", CONC_BLOCKS, 0);
}

/*
 * Interrupt delivery end to end: route the device's IRQ (from the command
 * line) through the IO-APIC, allow interrupts at CPL3, complete one request
 * with interrupts requested, and expect the vector plus InterruptStatus bit 0.
 */
static void blk_interrupt(struct blk *b, uint8_t vector)
{
	if (b->timed_out || cmdline_has("blk.noirq"))
		return;
	const char *why = "";
	if (irq_route(b->d->irq, vector, &why)) {
		printf("blk: SKIP interrupt (irq %u: %s)\n", b->d->irq, why);
		return;
	}
	vwrite(b->d, VMMIO_INTERRUPT_ACK, vread(b->d, VMMIO_INTERRUPT_STATUS));
	uint64_t before = fw_irq_count[vector];
	b->q.avail->flags = 0;
	if (b->q.event_idx)
		*(volatile uint16_t *)&b->q.avail->ring[b->q.num] = b->q.last_used;
	mb();
	irq_enable();
	int st = blk_sync(b, VIRTIO_BLK_T_IN, 0, data(b), SECTOR, 1, 1);
	uint64_t t0 = rdtsc(), limit = ms_to_tsc(1000);
	while (fw_irq_count[vector] == before && rdtsc() - t0 < limit)
		cpu_relax();
	irq_disable();
	uint32_t isr = vread(b->d, VMMIO_INTERRUPT_STATUS);
	vwrite(b->d, VMMIO_INTERRUPT_ACK, isr);
	b->q.avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	irq_mask(b->d->irq);
	uint64_t got = fw_irq_count[vector] - before;
	if (st == VIRTIO_BLK_S_OK && got >= 1 && (isr & 1))
		pass("interrupt: irq %lu -> vector 0x%lx delivered, InterruptStatus bit 0 set", b->d->irq, vector);
	else
		printf("blk: FAIL interrupt: irq %u vector 0x%x: request status %d, %lu interrupt(s), InterruptStatus 0x%x\n",
		       b->d->irq, vector, st, got, isr), checks++, failures++;
}

/*
 * blk.mode=write-and-wait: the pipelined writes (no FLUSH after them), then
 * wait to be ended from the host — the VMM's teardown must still make them
 * durable (SIGTERM, Ctrl-A x).
 */
static void blk_write_and_wait(struct blk *b)
{
	if (b->capacity < CONC_FIRST + CONC_BLOCKS * CONC_SECTORS || b->ro) {
		fail("write-and-wait needs a writable disk of %lu sectors", CONC_FIRST + CONC_BLOCKS * CONC_SECTORS, 0);
		return;
	}
	int bad = blk_pipeline(b, VIRTIO_BLK_T_OUT);
	if (bad) {
		fail("pipelined writes: %ld failed", (uint64_t)(int64_t)bad, 0);
		return;
	}
	printf("blk: wrote %d 4 KiB blocks at sector %d, waiting\n", CONC_BLOCKS, CONC_FIRST);
	for (;;)
		cpu_relax();
}

/*
 * blk.mode=log (snapshot tests): blk.count= single-sector writes from sector
 * LOG_FIRST on, one at a time. Each sector is read first and must be zeros: data
 * there was written by someone else (a restore seeing the original's later
 * writes, or a request done twice). `blk: log N` is printed once write N is
 * acknowledged. Then every sector is read back and the ring checked: each
 * request posted was used exactly once.
 */
#define LOG_FIRST 4096
static void blk_log(struct blk *b)
{
	uint64_t count = cmdline_u64("blk.count", 200);
	uint8_t *buf = data(b);
	if (b->ro || count == 0 || count > DATA_SIZE / SECTOR || b->capacity < LOG_FIRST + count) {
		fail("log needs a writable disk of %lu sectors and 1..8192 writes", LOG_FIRST + count, 0);
		return;
	}
	for (uint64_t i = 0; i < count; i++) {
		uint64_t s = LOG_FIRST + i;
		int st = blk_sync(b, VIRTIO_BLK_T_IN, s, buf, SECTOR, 1, 1);
		if (st != VIRTIO_BLK_S_OK || check_pattern(buf, s, 1, 1) >= 0) {
			fail("log: sector %lu already holds data before write %lu (or the read failed)", s, i);
			return;
		}
		fill_pattern(buf, s, 1);
		st = blk_sync(b, VIRTIO_BLK_T_OUT, s, buf, SECTOR, 1, 0);
		if (st != VIRTIO_BLK_S_OK) {
			fail("log: write %lu: status %lu", i, (uint64_t)(int64_t)st);
			return;
		}
		printf("blk: log %lu\n", i);
	}
	int st = blk_sync(b, VIRTIO_BLK_T_IN, LOG_FIRST, buf, (uint32_t)count * SECTOR, segs(b, 8), 1);
	int64_t bad = st == VIRTIO_BLK_S_OK ? check_pattern(buf, LOG_FIRST, (uint32_t)count, 0) : 0;
	if (st == VIRTIO_BLK_S_OK && bad < 0)
		pass("log: %lu sectors read back with the pattern", count, 0);
	else
		fail("log: read-back: status %lu, first difference at byte %lu", (uint64_t)(int64_t)st, (uint64_t)bad);
	uint16_t used = b->q.used->idx, avail = b->q.avail->idx;
	if (used == avail && used == b->q.last_used)
		pass("log: used index %lu = requests posted %lu", used, avail);
	else
		fail("log: used index %lu, requests posted %lu", used, avail);
}

/* Read-only check of region A (e.g. after a restore or on another VMM). */
static void blk_check(struct blk *b)
{
	uint8_t *rbuf = data(b);
	uint32_t na = b->capacity < 256 ? (uint32_t)b->capacity : 256;
	int st = blk_sync(b, VIRTIO_BLK_T_IN, 0, rbuf, na * SECTOR, 1, 1);
	int64_t bad = st == VIRTIO_BLK_S_OK ? check_pattern(rbuf, 0, na, 0) : 0;
	if (st == VIRTIO_BLK_S_OK && bad < 0)
		pass("check pattern in %lu sectors at 0", na, 0);
	else
		fail("check pattern: status %ld, first difference at byte %ld", (uint64_t)(int64_t)st, (uint64_t)bad);
}

int main(void)
{
	static struct vdev devs[VIRTIO_MAX_DEVICES];
	static struct blk blks[VIRTIO_MAX_DEVICES];
	int verbose = cmdline_has("blk.verbose") || cmdline_has("fw.debug");
	int n = virtio_find(devs, VIRTIO_MAX_DEVICES, verbose);
	seed = cmdline_u64("blk.seed", 0);
	timeout_ms = cmdline_u64("blk.timeout", 10000);
	size_t mlen = 0, blen = 0;
	const char *mode = cmdline_get("blk.mode", &mlen);
	const char *bench = cmdline_get("blk.bench", &blen);
	int nblk = 0;
	if (verbose)
		printf("blk: tsc_khz %lu\n", tsc_khz());
	for (int i = 0; i < n; i++) {
		if (devs[i].device_id != VIRTIO_ID_BLOCK)
			continue;
		struct blk *b = &blks[nblk];
		uintptr_t mem = SCRATCH_BASE + (uintptr_t)nblk * DEV_MEM_SIZE;
		nblk++;
		if (blk_open(b, &devs[i], mem)) {
			failures++;
			continue;
		}
		printf("blk: device %d at 0x%lx irq %u: %lu sectors (%lu KiB), features 0x%lx, seg_max %u, size_max %u, blk_size %u%s\n",
		       nblk - 1, devs[i].base, devs[i].irq, b->capacity, b->capacity / 2, devs[i].features,
		       b->seg_max, b->size_max, b->blk_size, b->ro ? ", read-only" : "");
		if (b->capacity == 0) {
			fail("device %lu has capacity 0", (uint64_t)nblk - 1, 0);
			continue;
		}
		if (bench) {
			blk_bench(b, bench, blen);
			break;
		}
		if (mode && mlen == 5 && memcmp(mode, "check", 5) == 0)
			blk_check(b);
		else if (mode && mlen == 14 && memcmp(mode, "write-and-wait", 14) == 0)
			blk_write_and_wait(b);
		else if (mode && mlen == 3 && memcmp(mode, "log", 3) == 0)
			blk_log(b);
		else {
			blk_test(b);
			blk_concurrent(b);
			blk_interrupt(b, (uint8_t)(0x40 + nblk - 1));
		}
		virtio_reset(b->d);
	}
	if (nblk == 0) {
		printf("blk: FAIL no virtio-blk device (give virtio_mmio.device=<size>@<base>:<irq>)\n");
		checks++;
		failures++;
	}
	if (!bench) {
		if (failures)
			printf("blk: FAIL %d of %d checks failed\n", failures, checks);
		else
			printf("blk: PASS all %d checks on %d device(s)\n", checks, nblk);
	}
	printf("blk: done\n");
	return 0;
}
