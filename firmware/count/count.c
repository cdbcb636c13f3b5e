/*
 * count: increments a 64-bit counter at CPL3 and prints "count N" every K
 * increments.  All state lives in the fixed state page at 0x200000 (and in
 * registers), so a snapshot/restore or migration continues the sequence.
 *
 * State page (guest-physical, little-endian u64s):
 *   0x200000 counter   incremented by one per loop iteration
 *   0x200008 next      counter value at which the next line is printed
 *   0x200010 every     K (count.every=, default COUNT_EVERY_DEFAULT)
 *   0x200018 lines     number of "count N" lines printed so far
 *   0x200020 limit     count.limit= (0: run forever)
 *   0x200028 magic     "SKIFFCNT" once initialised
 *
 * count.dirty=N (MiB, default 0 = off) adds a memory-dirtying load for
 * migration tests: every count.stride=S-th increment (default 64) writes the
 * counter value into the first and last word of the next page of an N MiB
 * region at 16 MiB, round-robin.  Which value each page holds follows from the
 * counter alone, so at every printed line all pages are checked; a page that
 * a migration lost or left stale prints "count: memory check FAILED ...".
 *
 * count.fill=N (MiB, default 0 = off) writes, once at the start, a word at
 * each end of every page of an N MiB region just above the dirty region and
 * never touches it again: memory a migration must copy in full once (no zero
 * pages) and need not re-send, so the stream's throughput shows.  FILL_CHUNK
 * of its pages are checked before every line, round-robin (all of them before
 * "count: done"); a wrong one prints "count: fill check FAILED ...".
 */
#include "rt.h"

const int fw_run_in_user_mode = 1;

#define COUNT_EVERY_DEFAULT 200000000ull
#define COUNT_MAGIC 0x544e434646494b53ull	/* "SKIFFCNT" */

enum { ST_COUNTER, ST_NEXT, ST_EVERY, ST_LINES, ST_LIMIT, ST_MAGIC, ST_DIRTY_PAGES, ST_STRIDE, ST_FILL_PAGES, ST_FILL_CHECKED };

#define DIRTY_BASE ((uint64_t)0x1000000)
#define FILL_MAGIC 0x4c4c494646494b53ull	/* "SKIFFILL" */
#define FILL_CHUNK 4096u	/* fill pages checked per line: ~0.2 ms natively */

/* The value page p must hold when the counter is c: the last write to it. */
static uint64_t expected(uint64_t c, uint64_t stride, uint64_t pages, uint64_t p)
{
	uint64_t w = c / stride;	/* writes so far; write k (k >= 1) went to page k % pages */
	if (w < 1)
		return 0;
	uint64_t k = w - ((w + pages - p % pages) % pages);
	return k >= 1 && k <= w ? k * stride : 0;
}

static int check(uint64_t c, uint64_t stride, uint64_t pages)
{
	for (uint64_t p = 0; p < pages; p++) {
		volatile uint64_t *page = (volatile uint64_t *)(DIRTY_BASE + p * 4096);
		uint64_t want = expected(c, stride, pages, p);
		if (page[0] != want || page[511] != want) {
			printf("count: memory check FAILED page %lu: %lu/%lu, want %lu\n", p, page[0], page[511], want);
			return 0;
		}
	}
	return 1;
}

static volatile uint64_t *fill_page(volatile uint64_t *st, uint64_t p)
{
	return (volatile uint64_t *)(DIRTY_BASE + (st[ST_DIRTY_PAGES] + p) * 4096);
}

/* Checks `count` fill pages from st[ST_FILL_CHECKED] on, round-robin. */
static int check_fill(volatile uint64_t *st, uint64_t count)
{
	uint64_t pages = st[ST_FILL_PAGES];
	for (uint64_t i = 0; i < count && i < pages; i++) {
		uint64_t p = (st[ST_FILL_CHECKED] + i) % pages;
		volatile uint64_t *page = fill_page(st, p);
		if (page[0] != (FILL_MAGIC ^ p) || page[511] != ~(FILL_MAGIC ^ p)) {
			printf("count: fill check FAILED page %lu: 0x%lx/0x%lx\n", p, page[0], page[511]);
			return 0;
		}
	}
	st[ST_FILL_CHECKED] = (st[ST_FILL_CHECKED] + count) % pages;
	return 1;
}

int main(void)
{
	volatile uint64_t *st = fw_state;
	uint64_t every = cmdline_u64("count.every", COUNT_EVERY_DEFAULT);
	if (every == 0)
		every = COUNT_EVERY_DEFAULT;
	st[ST_COUNTER] = 0;
	st[ST_NEXT] = every;
	st[ST_EVERY] = every;
	st[ST_LINES] = 0;
	st[ST_LIMIT] = cmdline_u64("count.limit", 0);
	st[ST_MAGIC] = COUNT_MAGIC;
	st[ST_DIRTY_PAGES] = cmdline_u64("count.dirty", 0) * 256;
	st[ST_STRIDE] = cmdline_u64("count.stride", 64);
	if (st[ST_STRIDE] == 0)
		st[ST_STRIDE] = 64;
	st[ST_FILL_PAGES] = cmdline_u64("count.fill", 0) * 256;
	st[ST_FILL_CHECKED] = 0;
	for (uint64_t p = 0; p < st[ST_FILL_PAGES]; p++) {
		volatile uint64_t *page = fill_page(st, p);
		page[0] = FILL_MAGIC ^ p;
		page[511] = ~(FILL_MAGIC ^ p);
	}
	printf("count: start every=%lu limit=%lu counter=0x%x\n", every, st[ST_LIMIT], STATE_PAGE);
	if (st[ST_DIRTY_PAGES])
		printf("count: dirtying %lu pages at 0x%lx, one per %lu increments\n", st[ST_DIRTY_PAGES], DIRTY_BASE, st[ST_STRIDE]);
	if (st[ST_FILL_PAGES])
		printf("count: filled %lu pages at 0x%lx\n", st[ST_FILL_PAGES], (uint64_t)fill_page(st, 0));
	for (;;) {
		uint64_t c = st[ST_COUNTER] + 1;
		st[ST_COUNTER] = c;
		uint64_t pages = st[ST_DIRTY_PAGES];
		if (pages && c % st[ST_STRIDE] == 0) {
			volatile uint64_t *page = (volatile uint64_t *)(DIRTY_BASE + ((c / st[ST_STRIDE]) % pages) * 4096);
			page[0] = c;
			page[511] = c;
		}
		if (c != st[ST_NEXT])
			continue;
		if (pages && !check(c, st[ST_STRIDE], pages))
			poweroff();
		if (st[ST_FILL_PAGES] && !check_fill(st, FILL_CHUNK))
			poweroff();
		printf("count %lu\n", c);
		st[ST_NEXT] = c + st[ST_EVERY];
		uint64_t lines = st[ST_LINES] + 1;
		st[ST_LINES] = lines;
		if (st[ST_LIMIT] && lines >= st[ST_LIMIT]) {
			if (st[ST_FILL_PAGES] && !check_fill(st, st[ST_FILL_PAGES]))
				poweroff();
			printf("count: done\n");
			poweroff();
		}
	}
}
