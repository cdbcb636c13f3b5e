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
 */
#include "rt.h"

const int fw_run_in_user_mode = 1;

#define COUNT_EVERY_DEFAULT 200000000ull
#define COUNT_MAGIC 0x544e434646494b53ull	/* "SKIFFCNT" */

enum { ST_COUNTER, ST_NEXT, ST_EVERY, ST_LINES, ST_LIMIT, ST_MAGIC };

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
	printf("count: start every=%lu limit=%lu counter=0x%x\n", every, st[ST_LIMIT], STATE_PAGE);
	for (;;) {
		uint64_t c = st[ST_COUNTER] + 1;
		st[ST_COUNTER] = c;
		if (c != st[ST_NEXT])
			continue;
		printf("count %lu\n", c);
		st[ST_NEXT] = c + st[ST_EVERY];
		uint64_t lines = st[ST_LINES] + 1;
		st[ST_LINES] = lines;
		if (st[ST_LIMIT] && lines >= st[ST_LIMIT]) {
			printf("count: done\n");
			poweroff();
		}
	}
}
