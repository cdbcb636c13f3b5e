/*
 * PVH entry and long-mode set-up shared by all Skiff test guests.
 *
 * The VMM enters pvh_entry32 in 32-bit protected mode, paging off, with
 * %ebx = physical address of struct hvm_start_info.  Everything executed
 * here runs at CPL0, which the kvm_pvm host emulates at ~1M instr/s, so
 * the page tables and GDT are built by the assembler, not at run time.
 */
#include "layout.h"

	.section .note.pvh, "a", @note
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 8			/* descsz: a 64-bit address, as Linux does */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_entry32

	.section .text.entry, "ax"
	.code32
	.globl pvh_entry32
pvh_entry32:
	cli
	cld
	mov	%ebx, %esi		/* keep start_info for kmain */
	lgdt	gdt_desc
	mov	%cr4, %eax
	or	$0x20, %eax		/* PAE */
	mov	%eax, %cr4
	mov	$pml4, %eax
	mov	%eax, %cr3
	mov	$0xC0000080, %ecx	/* EFER */
	rdmsr
	or	$0x100, %eax		/* LME */
	wrmsr
	mov	%cr0, %eax
	or	$0x80010001, %eax	/* PG | WP | PE */
	mov	%eax, %cr0
	pushl	$SEL_KCODE
	pushl	$start64
	lret

	.code64
start64:
	mov	$SEL_KDATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	xor	%eax, %eax
	mov	%eax, %fs
	mov	%eax, %gs
	mov	$kstack_top, %rsp
	mov	%esi, %edi
	call	kmain
1:	cli
	hlt
	jmp	1b

/* Interrupt/exception stubs: 16 bytes each, vector n at isr_stubs + 16*n. */
	.balign 16
	.globl isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if (vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	pushq	$0
	.endif
	pushq	$vec
	jmp	isr_common
	.set vec, vec + 1
	.endr

isr_common:
	push	%rax
	push	%rbx
	push	%rcx
	push	%rdx
	push	%rsi
	push	%rdi
	push	%rbp
	push	%r8
	push	%r9
	push	%r10
	push	%r11
	push	%r12
	push	%r13
	push	%r14
	push	%r15
	mov	%rsp, %rdi
	call	trap
	pop	%r15
	pop	%r14
	pop	%r13
	pop	%r12
	pop	%r11
	pop	%r10
	pop	%r9
	pop	%r8
	pop	%rbp
	pop	%rdi
	pop	%rsi
	pop	%rdx
	pop	%rcx
	pop	%rbx
	pop	%rax
	add	$16, %rsp		/* vector, error code */
	iretq

/* enter_user(entry %rdi, user stack %rsi, arg %rdx, rflags %rcx): never returns. */
	.globl enter_user
enter_user:
	pushq	$SEL_UDATA
	pushq	%rsi
	pushq	%rcx
	pushq	$SEL_UCODE
	pushq	%rdi
	mov	%rdx, %rdi
	xor	%eax, %eax
	xor	%ebx, %ebx
	xor	%ecx, %ecx
	xor	%edx, %edx
	xor	%esi, %esi
	xor	%ebp, %ebp
	mov	$SEL_UDATA, %r8d
	mov	%r8d, %ds
	mov	%r8d, %es
	xor	%r8d, %r8d
	iretq

	.section .data.boot, "aw"
	.balign 16
	.globl gdt
gdt:
	.quad 0				/* 0x00 null */
	.quad 0x00af9a000000ffff	/* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff	/* 0x10 kernel data */
	.quad 0x00cff2000000ffff	/* 0x18 user data (selector 0x1b) */
	.quad 0x00affa000000ffff	/* 0x20 user code, 64-bit (selector 0x23) */
	.quad 0, 0			/* 0x28 TSS, filled in by kmain */
gdt_end:
	.balign 8
	.word 0
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt

/*
 * Identity map of the first 4 GiB with 2 MiB pages, user-accessible so CPL3
 * code can touch RAM and MMIO directly.  The top GiB (MMIO) is uncached.
 */
	.section .data.pagetables, "aw"
	.balign 4096
	.globl pml4
pml4:
	.quad pdpt + 0x7
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x7
	.quad pd + 0x1000 + 0x7
	.quad pd + 0x2000 + 0x7
	.quad pd + 0x3000 + 0x7
	.fill 508, 8, 0
pd:
	.set i, 0
	.rept 1536
	.quad (i << 21) | 0x87		/* P | RW | US | PS */
	.set i, i + 1
	.endr
	.rept 512
	.quad (i << 21) | 0x9f		/* P | RW | US | PWT | PCD | PS */
	.set i, i + 1
	.endr

	.section .bss.stack, "aw", @nobits
	.balign 16
	.globl kstack_top
	.space KSTACK_SIZE
kstack_top:
