/*
 * TSC frequency: kvmclock, CPUID, or a PIT calibration.
 * Runs at CPL0 or, through the ud2 system call, from CPL3; see rt.c.
 */
#include "rt.h"

/* ---- time ---------------------------------------------------------------- */

static void wrmsr_any(uint32_t msr, uint64_t v)
{
	if (fw_cpl3)
		syscall3(SYS_WRMSR, msr, (long)v, 0);
	else
		__asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

/*
 * kvmclock (MSR_KVM_SYSTEM_TIME_NEW): KVM publishes the TSC-to-nanoseconds
 * scale; switched off again right away so it is not part of guest state.
 */
static uint64_t tsc_khz_from_kvmclock(void)
{
	volatile struct {
		uint32_t version, pad0;
		uint64_t tsc_timestamp, system_time;
		uint32_t mul;
		int8_t shift;
		uint8_t flags, pad[2];
	} *pv = (void *)&fw_state[KVMCLOCK_SLOT];
	uint32_t r[4];
	cpuid(0x40000000, 0, r);
	if (r[1] != 0x4b4d564b)		/* "KVMK" */
		return 0;
	pv->version = 0;
	pv->mul = 0;
	wrmsr_any(0x4b564d01, (uint64_t)pv | 1);
	uint32_t mul = 0;
	int shift = 0;
	for (int i = 0; i < 1000; i++) {
		uint32_t v = pv->version;
		if (v & 1 || !v)
			continue;
		mul = pv->mul;
		shift = pv->shift;
		if (pv->version == v)
			break;
	}
	wrmsr_any(0x4b564d01, 0);
	pv->version = 0;
	if (!mul)
		return 0;
	uint64_t k = (1000000ull << 32) / mul;
	return shift >= 0 ? k >> shift : k << -shift;
}

/* PIT channel 2 gate on port 0x61: count 50 ms of 1.193182 MHz ticks. */
static uint64_t tsc_khz_from_pit(void)
{
	const uint32_t ticks = 59659;	/* 50 ms */
	uint8_t p61 = inb(0x61);
	outb(0x61, (p61 & ~0x02) | 0x01);	/* gate on, speaker off */
	outb(0x43, 0xb0);			/* ch2, lobyte/hibyte, mode 0 */
	outb(0x42, ticks & 0xff);
	outb(0x42, ticks >> 8);
	uint64_t t0 = rdtsc();
	uint64_t guard = 0;
	while (!(inb(0x61) & 0x20))
		if (++guard > 100000000)
			return 0;
	uint64_t t1 = rdtsc();
	outb(0x61, p61);
	return (t1 - t0) / 50;
}

uint64_t tsc_khz(void)
{
	static uint64_t cached;
	if (cached)
		return cached;
	uint64_t k = cmdline_u64("tsc_khz", 0);
	uint32_t r[4];
	if (!k) {
		cpuid(0x40000000, 0, r);
		if (r[0] >= 0x40000010 && r[0] < 0x40010000) {
			cpuid(0x40000010, 0, r);
			k = r[0];
		}
	}
	if (!k) {
		cpuid(0, 0, r);
		if (r[0] >= 0x15) {
			cpuid(0x15, 0, r);
			if (r[0] && r[1] && r[2])
				k = (uint64_t)r[2] * r[1] / r[0] / 1000;
		}
	}
	if (!k)
		k = tsc_khz_from_kvmclock();
	if (!k)
		k = tsc_khz_from_pit();
	if (k < 100000)		/* no port 0x61 (e.g. QEMU microvm): not trustworthy */
		k = 0;
	cached = k;
	return k;
}

