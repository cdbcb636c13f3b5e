#!/usr/bin/env python3
"""Linux boot: `skiff run` versus QEMU microvm, same kernel, initramfs and
command line, one after the other in one run.

Prints, per VMM and vCPU count, seconds from process start to the guest's
`Run /init` line, to the init's `SKIFF-INIT: hello` marker, and to the VMM's exit
after the guest reboots (the init ends with `reboot -f`; i8042 reset).

    Benchmarks/linux-boot-bench.py [--cpus 1 2] [--runs 1] [--timeout 900]

Kernel, initramfs and command line come from scripts/guest-linux.sh (built and
cached on first use). QEMU gets `-device i8042` so the guest's reboot ends it.
"""
import argparse, os, shlex, subprocess, sys, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKS = [("Run /init", "run_init"), ("SKIFF-INIT: hello from the guest", "marker")]


def guest():
    out = subprocess.run([os.path.join(REPO, "scripts", "guest-linux.sh")], check=True,
                         capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    return env["SKIFF_GUEST_KERNEL"], env["SKIFF_GUEST_INITRD"], env["SKIFF_GUEST_CMDLINE"]


def timed(cmd, timeout):
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = {}
    deadline = start + timeout
    for raw in p.stdout:
        line = raw.decode(errors="replace")
        for text, key in MARKS:
            if key not in seen and text in line:
                seen[key] = time.monotonic() - start
        if time.monotonic() > deadline:
            p.kill()
            break
    status = p.wait()
    seen["exit"] = time.monotonic() - start
    seen["status"] = status
    return seen


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", type=int, nargs="+", default=[1])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--skiff", default=os.path.join(REPO, ".build", "release", "skiff"))
    args = ap.parse_args()
    if not os.path.exists(args.skiff):
        sys.exit(f"linux-boot-bench: {args.skiff} is missing; run `swift build -c release --static-swift-stdlib` first")
    kernel, initrd, cmdline = guest()
    rows = []
    for cpus in args.cpus:
        for _ in range(args.runs):
            skiff = [args.skiff, "run", "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline,
                     "--cpus", str(cpus), "--memory", args.memory]
            qemu = ["qemu-system-x86_64", "-M", "microvm,acpi=off", "-enable-kvm", "-cpu", "host,-arch-capabilities",
                    "-smp", str(cpus), "-m", args.memory, "-nodefaults", "-no-user-config", "-display", "none",
                    "-no-reboot", "-serial", "stdio", "-device", "i8042",
                    "-kernel", kernel, "-initrd", initrd, "-append", cmdline]
            for name, cmd in (("skiff", skiff), ("QEMU microvm", qemu)):
                rows.append((name, cpus, timed(cmd, args.timeout)))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"linux-boot-bench: {os.path.basename(kernel)} + {os.path.basename(initrd)}, {args.memory}, load average {load}")
    print(f"{'VMM':<14}{'vCPUs':>6}{'Run /init (s)':>15}{'SKIFF-INIT (s)':>16}{'exit (s)':>10}{'status':>8}")
    for name, cpus, r in rows:
        cell = lambda k: f"{r[k]:.1f}" if k in r else "-"
        print(f"{name:<14}{cpus:>6}{cell('run_init'):>15}{cell('marker'):>16}{cell('exit'):>10}{r['status']:>8}")


if __name__ == "__main__":
    main()
