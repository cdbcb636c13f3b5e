/*
 * ACPI power-off (FADT sleep control or PM1a), i8042 reset fallback, halt.
 * Runs at CPL0 or, through the ud2 system call, from CPL3; see rt.c.
 */
#include "rt.h"

/* ---- ACPI power-off ------------------------------------------------------ */

static int acpi_sum_ok(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s += *p++;
	return s == 0;
}

static uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static const uint8_t *acpi_find_rsdp(void)
{
	if (fw_start_info && fw_start_info->rsdp_paddr) {
		const uint8_t *p = (const uint8_t *)(uintptr_t)fw_start_info->rsdp_paddr;
		if (memcmp(p, "RSD PTR ", 8) == 0)
			return p;
	}
	for (uintptr_t a = 0xE0000; a < 0x100000; a += 16) {
		const uint8_t *p = (const uint8_t *)a;
		if (ld64(p) == 0x2052545020445352ull /* "RSD PTR " */ && acpi_sum_ok(p, 20))
			return p;
	}
	return NULL;
}

static const uint8_t *acpi_find_table(const uint8_t *rsdp, const char sig[4])
{
	uint64_t xsdt = rsdp[15] >= 2 ? ld64(rsdp + 24) : 0;
	const uint8_t *root = xsdt ? (const uint8_t *)(uintptr_t)xsdt
				   : (const uint8_t *)(uintptr_t)ld32(rsdp + 16);
	if (!root)
		return NULL;
	size_t esz = xsdt ? 8 : 4;
	uint32_t len = ld32(root + 4);
	if (len < 36 || len > 0x10000)
		return NULL;
	for (uint32_t off = 36; off + esz <= len; off += (uint32_t)esz) {
		uint64_t a = esz == 8 ? ld64(root + off) : ld32(root + off);
		const uint8_t *t = (const uint8_t *)(uintptr_t)a;
		if (a && a < (1ull << 32) && memcmp(t, sig, 4) == 0)
			return t;
	}
	return NULL;
}

const uint8_t *acpi_table(const char sig[4])
{
	const uint8_t *rsdp = acpi_find_rsdp();
	return rsdp ? acpi_find_table(rsdp, sig) : NULL;
}

/* SLP_TYP for S5 from the DSDT's \_S5_ package; -1 if absent. */
static int acpi_s5_type(const uint8_t *dsdt)
{
	uint32_t len = ld32(dsdt + 4);
	if (len > 0x100000)
		return -1;
	for (uint32_t i = 36; i + 8 < len; i++) {
		if (dsdt[i] != '_' || memcmp(dsdt + i, "_S5_", 4) != 0)
			continue;
		const uint8_t *p = dsdt + i + 4;
		if (*p++ != 0x12)		/* PackageOp */
			continue;
		p += 1 + (*p >> 6);		/* PkgLength */
		p++;				/* NumElements */
		switch (*p) {
		case 0x00: return 0;		/* ZeroOp */
		case 0x01: return 1;		/* OneOp */
		case 0x0a: return p[1];		/* BytePrefix */
		case 0x0b: return p[1];		/* WordPrefix (low byte) */
		case 0x0c: return p[1];		/* DWordPrefix (low byte) */
		default: return *p < 0x0a ? *p : -1;
		}
	}
	return -1;
}

static void gas_write(const uint8_t *gas, uint32_t val)
{
	uint8_t space = gas[0], bits = gas[1];
	uint64_t addr = ld64(gas + 4);
	if (!addr)
		return;
	if (space == 0) {			/* system memory */
		if (bits == 32)
			mmio_write32(addr, val);
		else if (bits == 16)
			mmio_write16(addr, (uint16_t)val);
		else
			mmio_write8(addr, (uint8_t)val);
	} else if (space == 1) {		/* system I/O */
		io_out((uint16_t)addr, val, bits == 32 ? 4 : bits == 16 ? 2 : 1);
	}
}

static void acpi_poweroff(void)
{
	const uint8_t *rsdp = acpi_find_rsdp();
	if (!rsdp)
		return;
	const uint8_t *fadt = acpi_find_table(rsdp, "FACP");
	if (!fadt)
		return;
	uint32_t flen = ld32(fadt + 4);
	uint64_t dsdt_addr = ld32(fadt + 40);
	if (flen >= 148 && ld64(fadt + 140))
		dsdt_addr = ld64(fadt + 140);
	int slp_typ = -1;
	if (dsdt_addr && dsdt_addr < (1ull << 32))
		slp_typ = acpi_s5_type((const uint8_t *)(uintptr_t)dsdt_addr);
	if (slp_typ < 0)
		slp_typ = 5;
	uint32_t flags = flen >= 116 ? ld32(fadt + 112) : 0;
	if (cmdline_has("fw.debug"))
		printf("poweroff: rsdp %p fadt %p len %u flags %x dsdt %lx slp_typ %d sleep_ctl space %u addr %lx pm1a_cnt %x\n",
		       rsdp, fadt, flen, flags, dsdt_addr, slp_typ, flen >= 256 ? fadt[244] : 0,
		       flen >= 256 ? ld64(fadt + 248) : 0, ld32(fadt + 64));
	if ((flags & (1u << 20)) && flen >= 256 && ld64(fadt + 244 + 4)) {
		gas_write(fadt + 244, (uint32_t)((slp_typ & 7) << 2) | (1u << 5));
		return;
	}
	uint32_t pm1a = ld32(fadt + 64);
	if (pm1a)
		io_out((uint16_t)pm1a, (uint32_t)((slp_typ & 7) << 10) | (1u << 13), 2);
	else if (flen >= 184 && ld64(fadt + 172 + 4))
		gas_write(fadt + 172, (uint32_t)((slp_typ & 7) << 10) | (1u << 13));
}

void halt_forever(void)
{
	if (fw_cpl3)
		syscall3(SYS_HALT, 0, 0, 0);
	for (;;)
		__asm__ volatile("cli; hlt");
}

void poweroff(void)
{
	acpi_poweroff();
	/* Give the VMM a moment to act on the request. */
	for (int i = 0; i < (fw_cpl3 ? 10000000 : 1000); i++)
		cpu_relax();
	if (cmdline_has("fw.noreset"))
		halt_forever();
	outb(0x64, 0xfe);		/* i8042 pulse reset line */
	for (int i = 0; i < (fw_cpl3 ? 10000000 : 1000); i++)
		cpu_relax();
	halt_forever();
}

