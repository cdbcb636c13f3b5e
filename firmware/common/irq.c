/* IO-APIC + local APIC set-up from CPL3 (all MMIO through user pages). */
#include "irq.h"

#define IOAPIC_DEFAULT 0xfec00000u

struct ioapic {
	uintptr_t base;
	uint32_t gsi_base, pins;
};

static uint32_t ioapic_read(uintptr_t base, uint32_t reg)
{
	mmio_write32(base, reg);
	return mmio_read32(base + 0x10);
}

static void ioapic_write(uintptr_t base, uint32_t reg, uint32_t v)
{
	mmio_write32(base, reg);
	mmio_write32(base + 0x10, v);
}

static int find_ioapic(uint32_t gsi, struct ioapic *out)
{
	const uint8_t *madt = acpi_table("APIC");
	if (madt) {
		uint32_t len;
		memcpy(&len, madt + 4, 4);
		for (uint32_t off = 44; off + 2 <= len && len < 0x10000;) {
			uint8_t type = madt[off], elen = madt[off + 1];
			if (elen < 2)
				break;
			if (type == 1 && elen >= 12) {
				uint32_t addr, base;
				memcpy(&addr, madt + off + 4, 4);
				memcpy(&base, madt + off + 8, 4);
				uint32_t pins = ((ioapic_read(addr, 1) >> 16) & 0xff) + 1;
				if (gsi >= base && gsi < base + pins) {
					*out = (struct ioapic){ addr, base, pins };
					return 0;
				}
			}
			off += elen;
		}
		return -1;
	}
	/* No MADT: the conventional single IO-APIC. */
	uint32_t pins = ((ioapic_read(IOAPIC_DEFAULT, 1) >> 16) & 0xff) + 1;
	if (pins < 2 || pins > 240 || gsi >= pins)
		return -1;
	*out = (struct ioapic){ IOAPIC_DEFAULT, 0, pins };
	return 0;
}

int irq_route(uint32_t gsi, uint8_t vector, const char **why)
{
	struct ioapic io;
	if (find_ioapic(gsi, &io)) {
		*why = "no IO-APIC for this GSI (MADT)";
		return -1;
	}
	/* Legacy PIC fully masked; LINT0/LINT1 masked; LAPIC software-enabled. */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	mmio_write32(LAPIC_BASE + 0x350, 0x10000);
	mmio_write32(LAPIC_BASE + 0x360, 0x10000);
	mmio_write32(LAPIC_BASE + 0x80, 0);			/* TPR */
	mmio_write32(LAPIC_BASE + 0xf0, 0x100 | LAPIC_SPURIOUS_VECTOR);
	uint32_t apic_id = mmio_read32(LAPIC_BASE + 0x20) >> 24;
	uint32_t pin = gsi - io.gsi_base;
	ioapic_write(io.base, 0x11 + 2 * pin, apic_id << 24);
	ioapic_write(io.base, 0x10 + 2 * pin, vector);		/* fixed, physical, high, edge, unmasked */
	if ((ioapic_read(io.base, 0x10 + 2 * pin) & 0x100ff) != vector) {
		*why = "IO-APIC redirection entry did not stick";
		return -2;
	}
	return 0;
}

void irq_mask(uint32_t gsi)
{
	struct ioapic io;
	if (find_ioapic(gsi, &io) == 0)
		ioapic_write(io.base, 0x10 + 2 * (gsi - io.gsi_base), 0x10000);
}
