/*
 * Freestanding runtime: 16550 output, printf, command line, traps and the
 * ud2 "system call", user-mode entry. Time: time.c; power-off: poweroff.c.
 *
 * Code that runs at CPL0 is emulated by the kvm_pvm host at ~1M instr/s:
 * everything here that runs before enter_user() is kept short.
 */
#include "rt.h"

#define COM1 0x3f8

struct hvm_start_info *fw_start_info;
const char *fw_cmdline = "";
int fw_cpl3;
int fw_iopl3;
struct fw_probe fw_probe;
volatile uint64_t fw_irq_count[256];

/* ---- memory and strings ------------------------------------------------ */

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

/* ---- port I/O ------------------------------------------------------------ */

static void raw_out(uint16_t port, uint32_t val, int width)
{
	if (width == 1)
		__asm__ volatile("outb %b0, %w1" :: "a"(val), "Nd"(port));
	else if (width == 2)
		__asm__ volatile("outw %w0, %w1" :: "a"(val), "Nd"(port));
	else
		__asm__ volatile("outl %0, %w1" :: "a"(val), "Nd"(port));
}

static uint32_t raw_in(uint16_t port, int width)
{
	uint32_t v = 0;
	if (width == 1) {
		uint8_t b;
		__asm__ volatile("inb %w1, %b0" : "=a"(b) : "Nd"(port));
		v = b;
	} else if (width == 2) {
		uint16_t w;
		__asm__ volatile("inw %w1, %w0" : "=a"(w) : "Nd"(port));
		v = w;
	} else {
		__asm__ volatile("inl %w1, %0" : "=a"(v) : "Nd"(port));
	}
	return v;
}

void io_out(uint16_t port, uint32_t val, int width)
{
	if (fw_cpl3 && !fw_iopl3)
		syscall3(SYS_OUT, port, val, width);
	else
		raw_out(port, val, width);
}

uint32_t io_in(uint16_t port, int width)
{
	if (fw_cpl3 && !fw_iopl3)
		return (uint32_t)syscall3(SYS_IN, port, width, 0);
	return raw_in(port, width);
}

/* ---- serial -------------------------------------------------------------- */

static void serial_init(void)
{
	raw_out(COM1 + 1, 0x00, 1);	/* no interrupts */
	raw_out(COM1 + 3, 0x80, 1);	/* DLAB */
	raw_out(COM1 + 0, 0x01, 1);	/* 115200 baud */
	raw_out(COM1 + 1, 0x00, 1);
	raw_out(COM1 + 3, 0x03, 1);	/* 8N1 */
	raw_out(COM1 + 2, 0x07, 1);	/* FIFO on, cleared */
	raw_out(COM1 + 4, 0x03, 1);	/* DTR | RTS, OUT2 off: no IRQ */
}

static void serial_write_raw(const char *s, size_t n)
{
	/* Set once LSR never showed THR empty: then stop polling (each poll is an exit). */
	static int lsr_stuck;
	for (size_t i = 0; i < n; i++) {
		int tries = 0;
		while (!lsr_stuck && !(raw_in(COM1 + 5, 1) & 0x20))
			if (++tries == 10000)
				lsr_stuck = 1;
		raw_out(COM1, (uint8_t)s[i], 1);
	}
}

void fw_write(const char *s, size_t n)
{
	if (fw_cpl3 && !fw_iopl3)
		syscall3(SYS_WRITE, (long)s, (long)n, 0);
	else
		serial_write_raw(s, n);
}

void puts(const char *s)
{
	fw_write(s, strlen(s));
}

/* ---- printf -------------------------------------------------------------- */

struct outbuf {
	char *buf;
	size_t cap, len;
};

static void ob_putc(struct outbuf *o, char c)
{
	if (o->len + 1 < o->cap)
		o->buf[o->len] = c;
	o->len++;
}

static void ob_num(struct outbuf *o, uint64_t v, unsigned base, int neg, int width, char pad, int upper)
{
	char tmp[24];
	int n = 0;
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[n++] = '-';
	while (n < width--)
		ob_putc(o, pad);
	while (n)
		ob_putc(o, tmp[--n]);
}

int vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap)
{
	struct outbuf o = { buf, cap, 0 };
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			ob_putc(&o, *fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		int width = 0, lng = 0;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		int prec = -1;
		if (*fmt == '.') {
			fmt++;
			prec = 0;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			}
			while (*fmt >= '0' && *fmt <= '9')
				prec = prec * 10 + (*fmt++ - '0');
		}
		while (*fmt == 'l' || *fmt == 'z') {
			lng = 1;
			fmt++;
		}
		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			ob_num(&o, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0, width, pad, 0);
			break;
		}
		case 'u':
			ob_num(&o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, 0, width, pad, 0);
			break;
		case 'x':
		case 'X':
			ob_num(&o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, 0, width, pad, *fmt == 'X');
			break;
		case 'p':
			ob_putc(&o, '0');
			ob_putc(&o, 'x');
			ob_num(&o, (uint64_t)va_arg(ap, void *), 16, 0, width, pad, 0);
			break;
		case 'c':
			ob_putc(&o, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			size_t n = 0;
			while (s[n] && (prec < 0 || (int)n < prec))
				n++;
			while ((int)n < width--)
				ob_putc(&o, ' ');
			for (size_t i = 0; i < n; i++)
				ob_putc(&o, s[i]);
			break;
		}
		case '%':
			ob_putc(&o, '%');
			break;
		default:
			ob_putc(&o, '%');
			ob_putc(&o, *fmt);
			break;
		}
	}
	if (cap)
		buf[o.len < cap ? o.len : cap - 1] = 0;
	return (int)o.len;
}

int snprintf(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vsnprintf(buf, n, fmt, ap);
	va_end(ap);
	return r;
}

int printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int r = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	fw_write(buf, r < (int)sizeof buf ? (size_t)r : sizeof buf - 1);
	return r;
}

/* ---- command line -------------------------------------------------------- */

const char *cmdline_get(const char *key, size_t *len)
{
	size_t kl = strlen(key);
	const char *p = fw_cmdline;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *w = p;
		while (*p && *p != ' ')
			p++;
		size_t wl = (size_t)(p - w);
		if (wl >= kl && memcmp(w, key, kl) == 0) {
			if (wl == kl) {
				if (len)
					*len = 0;
				return w + kl;
			}
			if (w[kl] == '=') {
				if (len)
					*len = wl - kl - 1;
				return w + kl + 1;
			}
		}
	}
	return NULL;
}

int cmdline_has(const char *key)
{
	return cmdline_get(key, NULL) != NULL;
}

/* Decimal or 0x-hex, with an optional K/M/G suffix (powers of 1024). */
int parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;
	unsigned base = 10;
	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	size_t start = i;
	for (; i < n; i++) {
		char c = s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			break;
		v = v * base + d;
	}
	if (i == start)
		return 0;
	if (i < n) {
		char c = s[i++];
		if (c == 'k' || c == 'K')
			v <<= 10;
		else if (c == 'm' || c == 'M')
			v <<= 20;
		else if (c == 'g' || c == 'G')
			v <<= 30;
		else
			i--;
	}
	*out = v;
	return (int)i;
}

uint64_t cmdline_u64(const char *key, uint64_t dflt)
{
	size_t len;
	const char *v = cmdline_get(key, &len);
	uint64_t out;
	if (!v || !parse_u64(v, len, &out))
		return dflt;
	return out;
}

/* ---- CPU tables, traps, user mode -------------------------------------- */

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

struct idt_entry {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, reserved;
} __attribute__((packed));

extern uint64_t gdt[];
extern char isr_stubs[], kstack_top[];
extern void enter_user(void (*entry)(void), void *stack, long arg, uint64_t rflags) __attribute__((noreturn));

static struct tss tss __attribute__((aligned(16)));
static struct idt_entry idt[256] __attribute__((aligned(16)));
static char ustack[USTACK_SIZE] __attribute__((aligned(16)));

static void tables_init(void)
{
	uint64_t base = (uint64_t)&tss;
	uint64_t limit = sizeof tss - 1;
	tss.rsp[0] = (uint64_t)kstack_top;
	tss.iomap_base = sizeof tss;	/* no I/O bitmap: IOPL decides */
	gdt[SEL_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
			   (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[SEL_TSS / 8 + 1] = base >> 32;
	__asm__ volatile("ltr %w0" :: "r"(SEL_TSS));

	for (int v = 0; v < 256; v++) {
		uint64_t h = (uint64_t)isr_stubs + 16 * (uint64_t)v;
		idt[v].off_lo = (uint16_t)h;
		idt[v].sel = SEL_KCODE;
		idt[v].type = 0x8e;	/* present, DPL0, interrupt gate */
		idt[v].off_mid = (uint16_t)(h >> 16);
		idt[v].off_hi = (uint32_t)(h >> 32);
	}
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof idt - 1, (uint64_t)idt };
	__asm__ volatile("lidt %0" :: "m"(idtr));
}

static int do_syscall(struct trap_frame *f)
{
	switch (f->rax) {
	case SYS_WRITE: {
		uint64_t n = f->rsi > 4096 ? 4096 : f->rsi;
		serial_write_raw((const char *)f->rdi, n);
		f->rax = n;
		return 1;
	}
	case SYS_OUT:
		raw_out((uint16_t)f->rdi, (uint32_t)f->rsi, (int)f->rdx);
		f->rax = 0;
		return 1;
	case SYS_IN:
		f->rax = raw_in((uint16_t)f->rdi, (int)f->rsi);
		return 1;
	case SYS_HALT:
		for (;;)
			__asm__ volatile("cli; hlt");
	case SYS_NOP:
		f->rax = 0;
		return 1;
	case SYS_SETIOPL:
		f->rflags = (f->rflags & ~0x3000ull) | ((f->rdi & 3) << 12);
		f->rax = 0;
		return 1;
	case SYS_SETIF:
		f->rflags = (f->rflags & ~0x200ull) | (f->rdi ? 0x200 : 0);
		f->rax = 0;
		return 1;
	case SYS_WRMSR:
		__asm__ volatile("wrmsr" :: "c"((uint32_t)f->rdi), "a"((uint32_t)f->rsi),
				 "d"((uint32_t)(f->rsi >> 32)));
		f->rax = 0;
		return 1;
	}
	return 0;
}

void trap(struct trap_frame *f)
{
	if (f->vector == 6 && (f->cs & 3) == 3) {
		const uint8_t *ip = (const uint8_t *)f->rip;
		if (ip[0] == 0x0f && ip[1] == 0x0b && do_syscall(f)) {
			f->rip += 2;
			return;
		}
	}
	if (fw_probe.resume && f->vector < 32) {
		/* A probe expected this: record it and continue after the probed instruction. */
		fw_probe.vector = (int64_t)f->vector;
		fw_probe.error = f->error;
		fw_probe.rip = f->rip;
		fw_probe.cs = f->cs;
		__asm__ volatile("mov %%cr2, %0" : "=r"(fw_probe.cr2));
		f->rip = fw_probe.resume;
		f->cs = SEL_UCODE;
		f->ss = SEL_UDATA;
		f->rflags = 0x2 | (f->rflags & 0x3000);
		fw_probe.resume = 0;
		return;
	}
	if (f->vector >= 32) {
		/* Only irq.c enables interrupts (briefly); count them and EOI the LAPIC. */
		fw_irq_count[f->vector]++;
		if (f->vector != LAPIC_SPURIOUS_VECTOR)
			mmio_write32(LAPIC_BASE + 0xb0, 0);
		return;
	}
	uint64_t cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	fw_cpl3 = 0;		/* we are at CPL0 now: print and power off directly */
	printf("FATAL: exception %lu error %lx rip %lx cs %lx rsp %lx cr2 %lx rax %lx\n",
	       f->vector, f->error, f->rip, f->cs, f->rsp, cr2, f->rax);
	poweroff();
}

static void user_start(void)
{
	int rc = main();
	(void)rc;
	poweroff();
}

/*
 * The guests use RAM outside their image at fixed places (the state page,
 * SCRATCH_BASE..SCRATCH_END): say so if the VMM's memory map or its own
 * boot data disagree.  A few dozen instructions at CPL0.
 */
static void check_memmap(struct hvm_start_info *si)
{
	if (!fw_start_info || si->version < 1 || !si->memmap_paddr)
		return;
	int debug = cmdline_has("fw.debug");
	/* hello stays in its image and the state page; the others use scratch RAM too. */
	const uint64_t end = fw_run_in_user_mode ? SCRATCH_END : STATE_PAGE + 0x1000;
	const struct hvm_memmap_entry *e = (const struct hvm_memmap_entry *)(uintptr_t)si->memmap_paddr;
	int covered = 0;
	for (uint32_t i = 0; i < si->memmap_entries && i < 128; i++) {
		if (debug)
			printf("memmap: %lx-%lx type %u\n", e[i].addr, e[i].addr + e[i].size - 1, e[i].type);
		if (e[i].type == 1 && e[i].addr <= IMAGE_BASE && e[i].addr + e[i].size >= end)
			covered = 1;
	}
	if (!covered)
		printf("WARN: RAM 0x%x-0x%lx (image, state page, scratch) is not all in one RAM entry of the memory map\n",
		       IMAGE_BASE, end - 1);
	uint64_t boot[3] = { (uint64_t)(uintptr_t)si, si->cmdline_paddr, si->memmap_paddr };
	for (int i = 0; i < 3; i++)
		if (boot[i] >= IMAGE_BASE && boot[i] < end)
			printf("WARN: VMM boot data at 0x%lx lies in the guest's working RAM 0x%x-0x%lx\n",
			       boot[i], IMAGE_BASE, end - 1);
}

void kmain(uint32_t start_info_paddr)
{
	serial_init();
	struct hvm_start_info *si = (struct hvm_start_info *)(uintptr_t)start_info_paddr;
	if (si && si->magic == HVM_START_MAGIC) {
		fw_start_info = si;
		if (si->cmdline_paddr)
			fw_cmdline = (const char *)(uintptr_t)si->cmdline_paddr;
	} else {
		serial_write_raw("WARN: no PVH start_info\n", 24);
	}
	tables_init();
	if (fw_start_info && cmdline_has("fw.debug"))
		printf("start_info: version %u cmdline %lx rsdp %lx memmap %lx entries %u\n",
		       si->version, si->cmdline_paddr, si->rsdp_paddr,
		       si->version >= 1 ? si->memmap_paddr : 0, si->version >= 1 ? si->memmap_entries : 0);
	if (cmdline_has("fw.debug"))
		printf("cmdline: %s\n", fw_cmdline);
	check_memmap(si);
	if (!fw_run_in_user_mode) {
		main();
		poweroff();
	}
	fw_iopl3 = cmdline_has("fw.iopl3");
	fw_cpl3 = 1;
	enter_user(user_start, ustack + sizeof ustack - 8, 0, fw_iopl3 ? 0x3002 : 0x0002);
}

/* The fixed state page at STATE_PAGE (own PT_LOAD segment; see link.ld). */
volatile uint64_t fw_state[512] __attribute__((section(".state"), aligned(4096)));
