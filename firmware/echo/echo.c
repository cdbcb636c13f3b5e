/*
 * echo: answers each line typed on the 16550 at 0x3f8 with "echo: LINE" in
 * upper case (so a test can tell the guest's answer from a terminal's own
 * echo), and powers off on the line "q".  Prints "echo: ready" first.
 * "sleep N" idles N seconds (LAPIC timer) before reading on, so a test can
 * queue "sleep 3", "q" and then close the VMM's stdin.
 *
 * It sleeps in HLT between bytes, woken by the UART's receive interrupt
 * (IRQ 4 through the IO-APIC), so an idle guest costs the host no CPU and a
 * test can measure what the VMM itself spends.  Runs at CPL0 for STI/HLT;
 * the work per byte is small, so slow CPL0 emulation (kvm_pvm) does not matter.
 */
#include "irq.h"

const int fw_run_in_user_mode = 0;

#define COM1_DATA 0x3f8
#define COM1_IER 0x3f9
#define COM1_MCR 0x3fc
#define COM1_LSR 0x3fd
#define LSR_DATA_READY 0x01
#define UART_GSI 4
#define UART_VECTOR 0x41
#define TIMER_VECTOR 0x42
#define LINE_MAX 200
/* LAPIC registers; its timer counts at 1 GHz under KVM and QEMU (1 ns bus cycle). */
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_DIVIDE 0x3e0
#define TIMER_HZ (1000000000u / 16)	/* divide-by-16 */

static int data_ready(void)
{
	return inb(COM1_LSR) & LSR_DATA_READY;
}

/* Waits for input: HLT with interrupts on, or polling if none could be routed. */
static void wait_for_input(int have_irq)
{
	while (!data_ready()) {
		if (!have_irq) {
			cpu_relax();
			continue;
		}
		/* CLI, check, then STI;HLT: the STI shadow covers HLT, so an
		 * interrupt arriving after the check still ends the HLT. */
		__asm__ volatile("cli");
		if (data_ready()) {
			__asm__ volatile("sti");
			return;
		}
		__asm__ volatile("sti; hlt" ::: "memory");
	}
}

/* Idles in HLT for `seconds` (at most 60) with the LAPIC timer, one-shot. */
static void sleep_seconds(uint64_t seconds)
{
	if (seconds > 60)
		seconds = 60;
	mmio_write32(LAPIC_BASE + 0xf0, 0x100 | LAPIC_SPURIOUS_VECTOR);	/* LAPIC on */
	mmio_write32(LAPIC_BASE + LAPIC_TIMER_DIVIDE, 0x3);
	mmio_write32(LAPIC_BASE + LAPIC_LVT_TIMER, TIMER_VECTOR);	/* one-shot, unmasked */
	uint64_t before = fw_irq_count[TIMER_VECTOR];
	mmio_write32(LAPIC_BASE + LAPIC_TIMER_INITIAL, (uint32_t)(seconds * TIMER_HZ));
	for (;;) {
		__asm__ volatile("cli");
		if (fw_irq_count[TIMER_VECTOR] != before)
			break;
		__asm__ volatile("sti; hlt" ::: "memory");	/* serial input may wake us too */
	}
	__asm__ volatile("sti");
}

static int is_sleep(const char *line, size_t n, uint64_t *seconds)
{
	return n > 6 && memcmp(line, "sleep ", 6) == 0 && parse_u64(line + 6, n - 6, seconds) == (int)(n - 6);
}

static void answer(const char *line, size_t n)
{
	char out[LINE_MAX + 16];
	size_t k = 0;
	for (const char *p = "echo: "; *p; p++)
		out[k++] = *p;
	for (size_t i = 0; i < n; i++) {
		char c = line[i];
		out[k++] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
	}
	out[k++] = '\n';
	fw_write(out, k);
}

int main(void)
{
	const char *why = "";
	int have_irq = irq_route(UART_GSI, UART_VECTOR, &why) == 0;
	if (have_irq) {
		outb(COM1_IER, 0x01);	/* receive-data interrupt */
		outb(COM1_MCR, 0x0b);	/* DTR | RTS | OUT2 (OUT2 gates the IRQ on a PC) */
	} else {
		printf("echo: no UART interrupt (%s), polling\n", why);
	}
	puts("echo: ready\n");
	char line[LINE_MAX];
	size_t n = 0;
	for (;;) {
		wait_for_input(have_irq);
		char c = (char)inb(COM1_DATA);
		if (c != '\r' && c != '\n') {
			if (n < LINE_MAX)
				line[n++] = c;
			continue;
		}
		if (n == 0)
			continue;	/* "\r\n" or a blank line: nothing to answer */
		if (n == 1 && line[0] == 'q') {
			puts("echo: bye\n");
			return 0;	/* the runtime powers off */
		}
		answer(line, n);
		uint64_t seconds;
		if (is_sleep(line, n, &seconds))
			sleep_seconds(seconds);
		n = 0;
	}
}
