/*
 * hostile: request sizes a driver controls.  Each data descriptor is only checked
 * to lie in RAM, so descriptors that overlap can add up to more than RAM, and past
 * the 32-bit used length (4 GiB) on a disk that large.  The VMM must answer IOERR,
 * not trust the sum.
 */
#include "hostile.h"

#define BIG_LEN (17u << 20)	/* 242 of these overlap to 4114 MiB */

/* The disk size in bytes (capacity is in 512-byte sectors). */
static uint64_t disk_bytes(void)
{
	uint64_t cap = vread(dev, VMMIO_CONFIG) | (uint64_t)vread(dev, VMMIO_CONFIG + 4) << 32;
	return cap * 512;
}

/* Whether the disk is big enough that only the sum, not the range, is wrong. */
static int need_big_disk(const char *name)
{
	if (disk_bytes() >= (9ull << 29))
		return 1;
	printf("hostile: case %s: skipped (disk of %lu bytes; needs 4.5 GiB)\n", name, disk_bytes());
	return 0;
}

/* Header, `count` data descriptors (all `len` bytes at MEM_BIG, device-writable
 * unless `type` writes), status: in `table` (the ring or an indirect table). */
static void overlapping(volatile struct virtq_desc *table, uint32_t type, uint16_t count, uint32_t len, uint32_t last_len)
{
	uint16_t data_flags = type == T_IN ? VIRTQ_DESC_F_WRITE : 0;
	header(type, 0);
	set(&table[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	for (uint16_t i = 1; i <= count; i++)
		set(&table[i], MEM_BIG, i == count ? last_len : len, data_flags | VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	set(&table[count + 1], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
}

void c_sum_over_4gib(void)
{
	if (!need_big_disk("data-descriptors-sum-over-4gib"))
		return;
	overlapping(q.desc, T_IN, 242, BIG_LEN, BIG_LEN);
	run("data-descriptors-sum-over-4gib", 0, 1);
	if (!need_big_disk("write-descriptors-sum-over-4gib"))
		return;
	overlapping(q.desc, T_OUT, 242, BIG_LEN, BIG_LEN);
	run("write-descriptors-sum-over-4gib", 0, 1);
}

void c_sum_over_4gib_indirect(void)
{
	if (!need_indirect("indirect-data-sum-over-4gib") || !need_big_disk("indirect-data-sum-over-4gib"))
		return;
	overlapping(ind, T_IN, 254, BIG_LEN, BIG_LEN);
	set(&q.desc[0], MEM_IND, 256 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	run("indirect-data-sum-over-4gib", 0, 1);
}

/* 240 x 17 MiB + 16 MiB: exactly 4 GiB, one sector more than the used length can say. */
void c_sum_exactly_4gib(void)
{
	if (!need_big_disk("data-descriptors-sum-exactly-4gib"))
		return;
	overlapping(q.desc, T_IN, 241, BIG_LEN, 16u << 20);
	run("data-descriptors-sum-exactly-4gib", 0, 1);
}

/* A valid read of 8 sectors into one 512-byte buffer, 8 times over. */
void c_overlapping_buffers(void)
{
	header(T_IN, 0);
	set(&q.desc[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	for (uint16_t i = 1; i <= 8; i++)
		set(&q.desc[i], MEM_BUF, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	set(&q.desc[9], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	run("overlapping-data-buffers", 0, 0);
}

/* The data buffer covers the header and the status byte: the device reads the
 * header first and writes the status last, so this completes (status 0). */
void c_data_over_header_and_status(void)
{
	header(T_IN, 0);
	set(&q.desc[0], MEM_HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	set(&q.desc[1], MEM_HDR, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	set(&q.desc[2], MEM_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	run("data-over-header-and-status", 0, 0);
}

/* An indirect table as long as the queue (256): header, 254 data, status. Valid. */
void c_indirect_whole_queue(void)
{
	if (!need_indirect("indirect-chain-as-long-as-queue"))
		return;
	overlapping(ind, T_IN, (uint16_t)(q.num - 2), 512, 512);
	set(&q.desc[0], MEM_IND, (uint32_t)q.num * 16, VIRTQ_DESC_F_INDIRECT, 0);
	run("indirect-chain-as-long-as-queue", 0, 0);
}
