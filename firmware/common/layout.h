/* Guest memory layout and selectors shared by C and assembly. */
#ifndef SKIFF_FW_LAYOUT_H
#define SKIFF_FW_LAYOUT_H

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b
#define SEL_UCODE 0x23
#define SEL_TSS   0x28

#define KSTACK_SIZE 0x4000
#define USTACK_SIZE 0x10000

/* Image is linked at 1 MiB and must end below the state page. */
#define IMAGE_BASE 0x100000
/* Fixed guest-physical state page (its own PT_LOAD segment, see link.ld). */
#define STATE_PAGE 0x200000
/* u64 index in the state page where kvmclock is read once (offset 0x800). */
#define KVMCLOCK_SLOT 256
/* Scratch RAM used by drivers (rings, buffers); not part of the image. */
#define SCRATCH_BASE 0x400000
/* End of the RAM the guests may use (blk: 6 MiB per device, up to 4 devices). */
#define SCRATCH_END 0x1c00000

/* Local APIC (xAPIC MMIO) and the spurious-interrupt vector we program. */
#define LAPIC_BASE 0xfee00000ul
#define LAPIC_SPURIOUS_VECTOR 0xff

#endif
