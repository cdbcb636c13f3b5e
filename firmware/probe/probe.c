/*
 * probe: measures what works at CPL3 on this host (kvm_pvm) and what it
 * costs.  Each line: `probe: NAME: RESULT`.  Not a pass/fail test.
 */
#include "rt.h"

const int fw_run_in_user_mode = 1;

static uint64_t khz;

/* A ud2 for a stray `syscall` to land on (its address goes into LSTAR). */
extern char syscall_landing[];
__asm__(".pushsection .text\n.globl syscall_landing\nsyscall_landing:\n\tud2\n.popsection");

static uint64_t ns(uint64_t cycles) { return khz ? cycles * 1000000 / khz : 0; }

/* Run the instruction(s) in `insn` with fault recording; prints the outcome. */
#define PROBE(name, insn)                                                        \
	do {                                                                          \
		fw_probe.vector = -1;                                                 \
		__asm__ volatile("lea 1f(%%rip), %%rax\n\tmov %%rax, %0\n\t" insn "\n1:" \
				 : "=m"(fw_probe.resume) : : "rax", "rcx", "rdx", "r11", "memory"); \
		fw_probe.resume = 0;                                                  \
		if (name)                                                             \
			report(name);                                                 \
	} while (0)

static void report(const char *name)
{
	if (fw_probe.vector < 0)
		printf("probe: %s: no exception\n", name);
	else
		printf("probe: %s: exception %ld error 0x%lx at rip 0x%lx cs 0x%lx cr2 0x%lx\n", name,
		       fw_probe.vector, fw_probe.error, fw_probe.rip, fw_probe.cs, fw_probe.cr2);
}

int main(void)
{
	khz = tsc_khz();
	printf("probe: tsc_khz %lu\n", khz);

	/* Cost of the ud2 system call round trip (CPL3 -> #UD -> CPL0 -> iretq). */
	uint64_t t0 = rdtsc();
	for (int i = 0; i < 200; i++)
		syscall3(SYS_NOP, 0, 0, 0);
	uint64_t c = (rdtsc() - t0) / 200;
	printf("probe: ud2 system call round trip: %lu cycles (%lu ns)\n", c, ns(c));

	t0 = rdtsc();
	for (int i = 0; i < 200; i++)
		(void)inb(0x3fd);
	c = (rdtsc() - t0) / 200;
	printf("probe: port read through ud2 (inb 0x3fd): %lu cycles (%lu ns)\n", c, ns(c));

	/* Exception delivery: a page fault above the 4 GiB identity map. */
	t0 = rdtsc();
	for (int i = 0; i < 100; i++)
		PROBE(NULL, "movq 0x100000000, %%rax");
	c = (rdtsc() - t0) / 100;
	printf("probe: #PF round trip (incl. recording): %lu cycles (%lu ns)\n", c, ns(c));
	report("read at 4 GiB (unmapped)");

	PROBE("rdtsc at CPL3", "rdtsc");
	PROBE("cpuid at CPL3", "xor %%eax, %%eax\n\tpush %%rbx\n\tcpuid\n\tpop %%rbx");
	PROBE("inb 0x3fd at CPL3, IOPL 0", "mov $0x3fd, %%edx\n\tinb %%dx, %%al");
	syscall3(SYS_SETIOPL, 3, 0, 0);
	PROBE("inb 0x3fd at CPL3, IOPL 3", "mov $0x3fd, %%edx\n\tinb %%dx, %%al");
	PROBE("cli at CPL3, IOPL 3", "cli\n\tsti");
	syscall3(SYS_SETIOPL, 0, 0, 0);
	PROBE("cli at CPL3, IOPL 0", "cli");
	PROBE("hlt at CPL3", "hlt");
	PROBE("rdmsr at CPL3", "mov $0x10, %%ecx\n\trdmsr");
	PROBE("int $0x80 at CPL3 (DPL0 gate)", "int $0x80");
	PROBE("int $0x3 at CPL3 (DPL0 gate)", "int $0x3");
	PROBE("ud2 at CPL3 (not a system call: rax=0)", "xor %%eax, %%eax\n\tud2");
	/* Where a stray syscall goes: LSTAR points at a ud2 (rax = 0: not a system call). */
	syscall3(SYS_WRMSR, 0xC0000082, (long)syscall_landing, 0);
	PROBE("syscall at CPL3 (EFER.SCE clear)", "xor %%eax, %%eax\n\tsyscall");
	if (fw_probe.vector == 6 && fw_probe.rip == (uint64_t)syscall_landing)
		printf("probe: syscall landed at LSTAR (0x%lx) still at CPL%lu\n", fw_probe.rip, fw_probe.cs & 3);
	PROBE("divide by zero", "xor %%ecx, %%ecx\n\tmov $1, %%eax\n\tcqo\n\tdiv %%rcx");
		printf("probe: done\n");
	return 0;
}
