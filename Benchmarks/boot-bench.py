#!/usr/bin/env python3
"""Boot benchmark: `skiff run` versus QEMU microvm on the same firmware guest.

For each VMM, over N runs (alternating, so drift hits both alike):
  * start -> first KVM_RUN: from execve to the first KVM_RUN ioctl, taken from
    `perf trace` (syscall tracepoints; a separate run), or from `strace -f -ttt`
    where perf cannot trace (strace stops every thread at every call and slows
    QEMU, with far more calls, much more than skiff);
  * start -> exit: wall time of a plain run until the guest's power-off ends
    the process;
  * VMM memory: peak of (VmRSS - RssShmem) sampled every ~1 ms from
    /proc/PID/status, i.e. peak RSS minus the guest RAM the guest touched.
    Both VMMs back guest RAM with a memfd here (QEMU through
    memory-backend-memfd), so guest pages count as RssShmem in both.
Prints medians (and min-max) side by side with the ratio skiff/QEMU.
`--devices` gives both VMMs a 64 MiB raw disk and (as root, on a TAP in a
throw-away network namespace) a network card, idle unless the guest uses them;
`--baseline PATH` adds a column for another skiff binary (before -> after).

    Benchmarks/boot-bench.py [--runs N] [--guest hello] [--memory 64M] [--devices]
                             [--api] [--baseline PATH]
"""
import argparse, os, re, shutil, statistics, subprocess, sys, tempfile, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commands(skiff, guest, memory, api_socket=None, disk=None, netns=None, tap=None):
    elf = os.path.join(REPO, "firmware", "out", guest + ".elf")
    skiff_cmd = [skiff, "run", "--kernel", elf, "--memory", memory, "--cmdline", ""]
    if api_socket:
        skiff_cmd += ["--api-socket", api_socket]
    qemu_cmd = ["qemu-system-x86_64", "-M", "microvm,memory-backend=mem", "-enable-kvm",
                "-cpu", "host,-arch-capabilities", "-m", memory,
                "-object", "memory-backend-memfd,id=mem,size=" + memory,
                "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
                "-no-reboot", "-kernel", elf]
    if disk:
        skiff_cmd += ["--disk", f"path={disk},format=raw"]
        qemu_cmd += ["-global", "virtio-mmio.force-legacy=false",
                     "-drive", f"id=d0,file={disk},format=raw,if=none,cache=writeback,aio=threads",
                     "-device", "virtio-blk-device,drive=d0"]
    if tap:
        skiff_cmd += ["--net", f"tap={tap},mac=52:54:00:12:34:56"]
        qemu_cmd += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
                     "-device", "virtio-net-device,netdev=n0,mac=52:54:00:12:34:56"]
    if netns:
        skiff_cmd, qemu_cmd = ["ip", "netns", "exec", netns] + skiff_cmd, ["ip", "netns", "exec", netns] + qemu_cmd
    return {"skiff": skiff_cmd, "qemu": qemu_cmd}


def make_devices(tmp):
    """A sparse raw disk and, as root, a TAP in a new network namespace."""
    disk = os.path.join(tmp, "disk.raw")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    if os.geteuid() != 0:
        print("boot-bench: not root, --devices gives a disk only (a TAP needs a network namespace)", file=sys.stderr)
        return disk, None, None
    netns, tap = f"bootbench{os.getpid()}", "bbtap0"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    for cmd in (["ip", "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr"], ["ip", "link", "set", tap, "up"]):
        subprocess.run(["ip", "netns", "exec", netns] + cmd, check=True)
    return disk, netns, tap


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
    """Milliseconds from execve to the first KVM_RUN, per `perf trace` (or strace) timestamps.

    `perf trace` reads the syscall tracepoints and barely slows either VMM; its times
    start at the first execve's return. Without perf, `strace -f` stops every thread
    at every system call, which serialises a multi-threaded start-up and charges QEMU
    (thousands of calls before its first KVM_RUN) far more than skiff.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".trace") as log:
        if PERF:
            subprocess.run(["perf", "trace", "-e", "execve,ioctl", "-o", log.name] + cmd,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for line in log:
                if "KVM_RUN" in line:
                    return float(line.split()[0])
            return float("nan")
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
                return (stamp - start) * 1000
    return float("nan")


def perf_trace_works():
    """`perf trace` needs perf and the right to read syscall tracepoints (root here)."""
    if not shutil.which("perf"):
        return False
    probe = subprocess.run(["perf", "trace", "-e", "ioctl", "--", "true"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return probe.returncode == 0


def summary(values):
    return statistics.median(values), min(values), max(values)


PERF = False


def main():
    global PERF
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--guest", default="hello")
    ap.add_argument("--memory", default="64M")
    ap.add_argument("--skiff", default=os.path.join(REPO, ".build", "release", "skiff"))
    ap.add_argument("--api", action="store_true",
                    help="also run skiff with --api-socket (a third column: what the control API costs)")
    ap.add_argument("--devices", action="store_true", help="attach a raw disk and (as root) a TAP network card")
    ap.add_argument("--baseline", help="another skiff binary, run alike in its own column (before -> after)")
    args = ap.parse_args()
    PERF = perf_trace_works()
    tmp = tempfile.mkdtemp(prefix="boot-bench-")
    netns = None
    try:
        devices = make_devices(tmp) if args.devices else (None, None, None)
        netns = devices[1]
        run(args, tmp, *devices)
    finally:
        if netns:
            subprocess.run(["ip", "netns", "del", netns], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp, disk, netns, tap):
    if not os.path.exists(args.skiff):
        sys.exit(f"boot-bench: {args.skiff} is missing; run `swift build -c release --static-swift-stdlib` first")
    subprocess.run([os.path.join(REPO, "scripts", "build-firmware.sh"), args.guest], check=True, stdout=subprocess.DEVNULL)

    devices = {"disk": disk, "netns": netns, "tap": tap}
    cmds = commands(args.skiff, args.guest, args.memory, **devices)
    if args.api:
        sock = os.path.join(tmp, "vm.sock")
        cmds["skiff+api"] = commands(args.skiff, args.guest, args.memory, sock, **devices)["skiff"]
    if args.baseline:
        cmds["baseline"] = commands(args.baseline, args.guest, args.memory, **devices)["skiff"]
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
            results[name]["run"].append(first_kvm_run(cmd))

    attached = " + disk + net" if tap else (" + disk" if disk else "")
    print(f"boot-bench: guest {args.guest}{attached}, {args.memory} RAM, {args.runs} runs each, medians (min-max)")
    extras = [(name, title) for name, title in (("skiff+api", "skiff --api-socket"), ("baseline", "baseline"))
              if name in results]
    print(f"{'figure':<34}{'skiff':>24}{'QEMU microvm':>24}{'skiff/QEMU':>12}" + "".join(f"{t:>24}" for _, t in extras))
    rows = [("start -> first KVM_RUN (ms, " + ("perf trace" if PERF else "strace") + ")", "run"),
            ("start -> exit after power-off (ms)", "wall"),
            ("peak RSS - guest RAM (MiB)", "mem")]
    for label, key in rows:
        s, q = summary(results["skiff"][key]), summary(results["qemu"][key])
        cell = lambda t: f"{t[0]:.1f} ({t[1]:.1f}-{t[2]:.1f})"
        extra = "".join(f"{cell(summary(results[name][key])):>24}" for name, _ in extras)
        print(f"{label:<34}{cell(s):>24}{cell(q):>24}{s[0] / q[0]:>12.2f}" + extra)


if __name__ == "__main__":
    main()
