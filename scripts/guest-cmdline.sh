#!/usr/bin/env bash
# The test-default kernel command line for Skiff's guest Linux.
#
#   source scripts/guest-cmdline.sh; cmdline=$(skiff_guest_cmdline)
#   scripts/guest-cmdline.sh            # prints it
#
# Rule: the base flags are always used. The PVM flags are added only when
# /sys/module/kvm_pvm exists (a KVM host without hardware virtualization,
# where guest CPL0 code runs in KVM's instruction emulator); on hardware KVM
# the guest gets the base flags only and boots as a stock kernel would.
# SKIFF_PVM=1 / SKIFF_PVM=0 forces the decision either way.
# See docs/guest-linux.md for why each flag is there.

# console on the 8250 at 0x3f8; reboot through the i8042 (0xfe to port 0x64),
# which ends the VM; no KASLR (also off in the config) so System.map
# addresses match the running kernel when profiling.
SKIFF_GUEST_CMDLINE_BASE="console=ttyS0 reboot=k nokaslr"

# kvm_pvm only:
#  - pvm_quirks: enables the guest-kernel patches in firmware/linux/patches
#    (no int3 selftest, no fwait in fpu__drop, SYSCALL completed from #PF);
#  - noxsave ... clearcpuid=...: hide CPU features whose instructions KVM's
#    emulator cannot run at CPL0 (xrstor, popcnt, cmpxchg16b, clac, ...);
#  - mitigations=off: no speculation workarounds (each costs emulated work);
#  - tsc=reliable no_timer_check lpj=5000000: skip the TSC, timer and delay
#    loop calibrations, which spin for long in emulated code;
#  - noreplace-smp: with one vCPU the kernel would rewrite every LOCK prefix
#    through text_poke() (a temporary mm and TLB flush each), ~10 s here;
#  - rodata=off: skip mark_rodata_ro(), whose page-attribute changes walk the
#    kernel mapping page by page (and the 3.7 MiB of alignment gaps are then
#    not poisoned and freed), ~25 s here; a test guest does without W^X;
#  - retain_initrd: do not poison and free the initramfs image afterwards;
#  - GLIBC_TUNABLES=...: an environment variable for init and so for every
#    process (the kernel passes unknown NAME=value words to init): glibc
#    must not use AVX/AVX-512. The kernel (noxsave) context-switches only
#    the FXSAVE state (x87, XMM0-15), but guest user mode runs natively
#    with the host's XCR0, so CPUID/XGETBV offer AVX-512 and glibc's
#    string functions would keep data in YMM/ZMM registers that another
#    task then overwrites (issue #13; docs/guest-linux.md).
SKIFF_GUEST_GLIBC_TUNABLES="glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX_Fast_Unaligned_Load"
SKIFF_GUEST_CMDLINE_PVM="pvm_quirks noxsave nofsgsbase nopku noinvpcid clearcpuid=popcnt,cx16,rdrand,rdseed,rdtscp,erms,fsrm,avx,avx2,rdpid,smap,smep,umip,xsave,fsgsbase,pku,invpcid,clflushopt,clwb mitigations=off tsc=reliable no_timer_check lpj=5000000 noreplace-smp rodata=off retain_initrd GLIBC_TUNABLES=$SKIFF_GUEST_GLIBC_TUNABLES"

skiff_host_is_pvm() {
    case ${SKIFF_PVM:-} in
        1) return 0 ;;
        0) return 1 ;;
    esac
    [ -e /sys/module/kvm_pvm ]
}

skiff_guest_cmdline() {
    if skiff_host_is_pvm; then
        echo "$SKIFF_GUEST_CMDLINE_BASE $SKIFF_GUEST_CMDLINE_PVM"
    else
        echo "$SKIFF_GUEST_CMDLINE_BASE"
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    skiff_guest_cmdline
fi
