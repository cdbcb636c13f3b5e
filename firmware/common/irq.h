/*
 * Interrupt delivery for tests: route one GSI through the IO-APIC (found in
 * the ACPI MADT) to the boot CPU's local APIC, edge-triggered, and let CPL3
 * code take interrupts for a while.  The CPL0 handler only counts them in
 * fw_irq_count[vector] and sends EOI.
 */
#ifndef SKIFF_FW_IRQ_H
#define SKIFF_FW_IRQ_H

#include "rt.h"

/* Program GSI `gsi` -> `vector` (edge, active high, unmasked).  Returns 0, or
 * a negative number and a reason in *why. */
int irq_route(uint32_t gsi, uint8_t vector, const char **why);
void irq_mask(uint32_t gsi);
/* RFLAGS.IF of the calling CPL3 code. */
static inline void irq_enable(void) { syscall3(SYS_SETIF, 1, 0, 0); }
static inline void irq_disable(void) { syscall3(SYS_SETIF, 0, 0, 0); }

#endif
