#!/usr/bin/env python3
"""Boot benchmark: `skiff run` versus QEMU microvm on the same firmware guest.

For each VMM, over N runs (alternating, so drift hits both alike):
  * start -> first KVM_RUN: from execve to the first KVM_RUN ioctl, taken from
    `strace -f -ttt` (strace slows both VMMs alike; a separate figure);
  * start -> exit: wall time of a plain run until the guest's power-off ends
    the process;
  * VMM memory: peak of (VmRSS - RssShmem) sampled every ~1 ms from
    /proc/PID/status, i.e. peak RSS minus the guest RAM the guest touched.
    Both VMMs back guest RAM with a memfd here (QEMU through
    memory-backend-memfd), so guest pages count as RssShmem in both.
Prints medians (and min-max) side by side with the ratio skiff/QEMU.

    Benchmarks/boot-bench.py [--runs N] [--guest hello] [--memory 64M]
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commands(skiff, guest, memory, api_socket=None):
    elf = os.path.join(REPO, "firmware", "out", guest + ".elf")
    skiff_cmd = [skiff, "run", "--kernel", elf, "--memory", memory, "--cmdline", ""]
    if api_socket:
        skiff_cmd += ["--api-socket", api_socket]
    qemu_cmd = ["qemu-system-x86_64", "-M", "microvm,memory-backend=mem", "-enable-kvm",
                "-cpu", "host,-arch-capabilities", "-m", memory,
                "-object", "memory-backend-memfd,id=mem,size=" + memory,
                "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                "-no-reboot", "-kernel", elf]
    return {"skiff": skiff_cmd, "qemu": qemu_cmd}


def wall_and_memory(cmd):
    """Runs cmd once; returns (seconds, peak VmRSS-RssShmem in KiB, exit status)."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    path = f"/proc/{p.pid}/status"
    while p.poll() is None:
        try:
            with open(path) as f:
                text = f.read()
            rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))
            shm = int(re.search(r"RssShmem:\s+(\d+)", text).group(1))
            peak = max(peak, rss - shm)
        except (OSError, AttributeError):
            pass
        time.sleep(0.001)
    return time.perf_counter() - start, peak, p.returncode


def first_kvm_run(cmd):
    """Seconds from execve to the first KVM_RUN, per strace's timestamps."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as log:
        subprocess.run(["strace", "-f", "-ttt", "-e", "trace=execve,ioctl", "-o", log.name] + cmd,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = None
        for line in log:
            fields = line.split()
            if len(fields) < 3:
                continue
            stamp = float(fields[1])
            if start is None and "execve(" in line:
                start = stamp
            if "KVM_RUN" in line and start is not None:
                return stamp - start
    return float("nan")


def summary(values):
    return statistics.median(values), min(values), max(values)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--guest", default="hello")
    ap.add_argument("--memory", default="64M")
    ap.add_argument("--skiff", default=os.path.join(REPO, ".build", "release", "skiff"))
    ap.add_argument("--api", action="store_true",
                    help="also run skiff with --api-socket (a third column: what the control API costs)")
    args = ap.parse_args()
    if not os.path.exists(args.skiff):
        sys.exit(f"boot-bench: {args.skiff} is missing; run `swift build -c release --static-swift-stdlib` first")
    subprocess.run([os.path.join(REPO, "scripts", "build-firmware.sh"), args.guest], check=True, stdout=subprocess.DEVNULL)

    cmds = commands(args.skiff, args.guest, args.memory)
    if args.api:
        sock = os.path.join(tempfile.mkdtemp(prefix="boot-bench-"), "vm.sock")
        cmds["skiff+api"] = commands(args.skiff, args.guest, args.memory, sock)["skiff"]
    results = {name: {"run": [], "wall": [], "mem": []} for name in cmds}
    for name, cmd in cmds.items():  # warm-up: page cache, first-run costs
        wall_and_memory(cmd)
    for _ in range(args.runs):
        for name, cmd in cmds.items():
            wall, mem, status = wall_and_memory(cmd)
            if status != 0:
                sys.exit(f"boot-bench: {name} exited {status}: {' '.join(cmd)}")
            results[name]["wall"].append(wall * 1000)
            results[name]["mem"].append(mem / 1024)
            results[name]["run"].append(first_kvm_run(cmd) * 1000)

    print(f"boot-bench: guest {args.guest}, {args.memory} RAM, {args.runs} runs each, medians (min-max)")
    api = "skiff+api" in results
    print(f"{'figure':<34}{'skiff':>24}{'QEMU microvm':>24}{'skiff/QEMU':>12}" + (f"{'skiff --api-socket':>24}" if api else ""))
    rows = [("start -> first KVM_RUN (ms, strace)", "run"),
            ("start -> exit after power-off (ms)", "wall"),
            ("peak RSS - guest RAM (MiB)", "mem")]
    for label, key in rows:
        s, q = summary(results["skiff"][key]), summary(results["qemu"][key])
        cell = lambda t: f"{t[0]:.1f} ({t[1]:.1f}-{t[2]:.1f})"
        extra = f"{cell(summary(results['skiff+api'][key])):>24}" if api else ""
        print(f"{label:<34}{cell(s):>24}{cell(q):>24}{s[0] / q[0]:>12.2f}" + extra)


if __name__ == "__main__":
    main()
