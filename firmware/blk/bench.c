/*
 * blk.bench=seq|rand|seqwrite|randwrite: throughput of the first device,
 * requests kept in flight by polling (docs/firmware.md).
 */
#include "blk.h"

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

void blk_bench(struct blk *b, const char *mode, size_t mlen)
{
	int rnd = mlen >= 4 && memcmp(mode, "rand", 4) == 0;
	int wr = (mlen == 8 && memcmp(mode, "seqwrite", 8) == 0) || (mlen == 9 && memcmp(mode, "randwrite", 9) == 0);
	if (!rnd && !(mlen >= 3 && memcmp(mode, "seq", 3) == 0)) {
		printf("blk: FAIL unknown blk.bench mode\n");
		failures++;
		return;
	}
	if (wr && b->ro) {
		printf("blk: FAIL write benchmark on a read-only disk\n");
		failures++;
		return;
	}
	uint64_t bs = cmdline_u64("blk.bs", rnd ? 4096 : 131072);
	uint64_t qd = cmdline_u64("blk.qd", rnd ? 32 : 8);
	uint64_t secs = cmdline_u64("blk.secs", 5);
	uint64_t span = cmdline_u64("blk.span", 1ull << 30);
	if (bs < SECTOR || bs % SECTOR)
		bs = 4096;
	unsigned nseg = segs(b, (unsigned)((bs + 65535) / 65536));
	if (b->size_max && bs / nseg > b->size_max)
		nseg = segs(b, (unsigned)((bs + b->size_max - 1) / b->size_max));
	if (nseg > 14)
		nseg = 14;
	unsigned per = nseg + 2;
	b->per = per;
	if (qd < 1)
		qd = 1;
	if (qd > b->q.num / per)
		qd = b->q.num / per;
	if (qd * bs > DATA_SIZE)
		qd = DATA_SIZE / bs;
	if (span > b->capacity * SECTOR)
		span = b->capacity * SECTOR;
	uint64_t nblocks = span / bs;
	if (!qd || !nblocks) {
		printf("blk: FAIL bench parameters (bs %lu, disk too small?)\n", bs);
		failures++;
		return;
	}
	uint64_t khz = tsc_khz();
	if (!khz) {
		printf("blk: FAIL bench needs the TSC frequency (tsc_khz=)\n");
		failures++;
		return;
	}
	printf("blk: bench %.*s bs=%lu qd=%lu secs=%lu span=%lu tsc_khz=%lu\n",
	       (int)mlen, mode, bs, qd, secs, nblocks * bs, khz);
	uint64_t rng = 0x243F6A8885A308D3ull, next = 0, ops = 0, errors = 0;
	uint64_t t0 = rdtsc(), end = t0 + secs * 1000 * khz, tlast = t0;
	uint32_t type = wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
	for (unsigned s = 0; s < qd; s++) {
		uint64_t blkno = rnd ? xorshift(&rng) % nblocks : next++ % nblocks;
		blk_submit(b, s, type, blkno * bs / SECTOR, data(b) + s * bs, (uint32_t)bs, nseg, !wr);
	}
	vq_kick(&b->q);
	uint64_t inflight = qd;
	int stopping = 0;
	while (inflight) {
		uint32_t id, len;
		int got = 0;
		while (vq_poll(&b->q, &id, &len)) {
			unsigned s = id / per;
			inflight--;
			ops++;
			if (*slot_status(b, s) != VIRTIO_BLK_S_OK)
				errors++;
			if (!stopping) {
				uint64_t blkno = rnd ? xorshift(&rng) % nblocks : next++ % nblocks;
				blk_submit(b, s, type, blkno * bs / SECTOR, data(b) + s * bs, (uint32_t)bs, nseg, !wr);
				inflight++;
				got = 1;
			}
		}
		uint64_t now = rdtsc();
		if (got)
			vq_kick(&b->q), tlast = now;
		if (!stopping && now >= end)
			stopping = 1;
		if (now - tlast > 10000 * khz) {
			printf("blk: FAIL bench stalled with %lu requests in flight\n", inflight);
			failures++;
			return;
		}
	}
	uint64_t cycles = rdtsc() - t0;
	uint64_t us = cycles * 1000 / khz;
	uint64_t bytes = ops * bs;
	uint64_t mibs_x100 = us ? bytes * 100 / us * 1000000 / (1 << 20) : 0;
	uint64_t iops = us ? ops * 1000000 / us : 0;
	printf("blk: bench result mode=%.*s ops=%lu bytes=%lu usecs=%lu errors=%lu MiB/s=%lu.%02lu IOPS=%lu notifies=%lu\n",
	       (int)mlen, mode, ops, bytes, us, errors, mibs_x100 / 100, mibs_x100 % 100, iops, b->q.notifies);
	if (errors)
		failures++;
}

