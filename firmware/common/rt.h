/* Freestanding runtime shared by the Skiff test guests. */
#ifndef SKIFF_FW_RT_H
#define SKIFF_FW_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "layout.h"

/* Set by each guest: 1 = run main() at CPL3 (native speed on kvm_pvm). */
extern const int fw_run_in_user_mode;
int main(void);

/* PVH start info (Xen include/public/arch-x86/hvm/start_info.h). */
#define HVM_START_MAGIC 0x336ec578
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;		/* version >= 1 */
	uint32_t memmap_entries;	/* version >= 1 */
	uint32_t reserved;
};

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

extern struct hvm_start_info *fw_start_info;	/* NULL if magic was wrong */
extern const char *fw_cmdline;			/* never NULL */
extern int fw_cpl3;				/* running at CPL3 now */
extern int fw_iopl3;				/* CPL3 may use port I/O directly */
/* The 4 KiB page at STATE_PAGE (0x200000), zero at boot. */
extern volatile uint64_t fw_state[512];

/*
 * Fault probing (for the probe guest): with `resume` set, the next exception
 * (vector < 32) is recorded here and execution continues at CPL3 at `resume`.
 */
struct fw_probe {
	uint64_t resume;
	int64_t vector;		/* -1: none */
	uint64_t error, rip, cs, cr2;
};
extern struct fw_probe fw_probe;

/* Trap frame pushed by isr_common. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

/* System calls: `ud2` with %rax = number; the #UD handler serves them. */
enum {
	SYS_WRITE = 1,	/* rdi = buf, rsi = len */
	SYS_OUT = 2,	/* rdi = port, rsi = value, rdx = width (1, 2, 4) */
	SYS_IN = 3,	/* rdi = port, rsi = width; returns the value */
	SYS_HALT = 4,	/* cli; hlt forever */
	SYS_NOP = 5,	/* returns 0; measures the round trip */
	SYS_WRMSR = 6,	/* rdi = MSR, rsi = value */
	SYS_SETIOPL = 7,	/* rdi = IOPL for the caller's RFLAGS */
	SYS_SETIF = 8,	/* rdi = 0/1: the caller's RFLAGS.IF (interrupts at CPL3) */
};

static inline long syscall3(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("ud2" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "memory");
	return ret;
}

/* Port I/O that works at either privilege level. */
void io_out(uint16_t port, uint32_t val, int width);
uint32_t io_in(uint16_t port, int width);
static inline void outb(uint16_t p, uint8_t v) { io_out(p, v, 1); }
static inline void outw(uint16_t p, uint16_t v) { io_out(p, v, 2); }
static inline void outl(uint16_t p, uint32_t v) { io_out(p, v, 4); }
static inline uint8_t inb(uint16_t p) { return (uint8_t)io_in(p, 1); }

/* MMIO. */
static inline uint32_t mmio_read32(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint8_t mmio_read8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline void mmio_write8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline uint16_t mmio_read16(uintptr_t a) { return *(volatile uint16_t *)a; }
static inline void mmio_write16(uintptr_t a, uint16_t v) { *(volatile uint16_t *)a = v; }

static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void mb(void) { __asm__ volatile("mfence" ::: "memory"); }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* Strings and memory. */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* Output to the 16550 at 0x3f8. */
void fw_write(const char *s, size_t n);
void puts(const char *s);		/* no newline added */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int snprintf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);

/* Kernel command line: "key=value" words separated by spaces. */
const char *cmdline_get(const char *key, size_t *len);
uint64_t cmdline_u64(const char *key, uint64_t dflt);
int cmdline_has(const char *key);
int parse_u64(const char *s, size_t n, uint64_t *out);

/* Time. */
uint64_t tsc_khz(void);			/* 0 if unknown */

/* An ACPI table by signature (via start_info's RSDP or the BIOS-area scan). */
const uint8_t *acpi_table(const char sig[4]);

/* Interrupts taken (vector >= 32) since boot; see irq.h. */
extern volatile uint64_t fw_irq_count[256];

/* Ending the VM: ACPI S5, then i8042 reset, then halt. */
void poweroff(void) __attribute__((noreturn));
void halt_forever(void) __attribute__((noreturn));

#endif
