#!/usr/bin/env python3
"""Device benchmark: `skiff run` versus QEMU microvm on the blk and net firmware guests.

Both VMMs boot the same firmware image (firmware/out/blk.elf, net.elf) on the
same image file or the same TAP, one after the other, and the guest measures:

  * virtio-blk (`blk.bench=`): sequential read/write MiB/s (128 KiB requests,
    8 in flight) and random 4 KiB read/write IOPS at queue depth 1 and 32, on a
    raw image and on a qcow2 image (fully allocated, converted from the raw
    one). Both images hold random data and are written just before the runs,
    so they sit in the host page cache: this measures the VMMs, not the disk.
    Skiff: buffered I/O (its storage layer opens images without O_DIRECT and
    moves the data on its per-disk I/O threads). QEMU: `cache=writeback,aio=threads`, i.e.
    buffered I/O through its thread pool (`aio=native` needs O_DIRECT there).
  * virtio-net (`net.bench=`), on a TAP in a throw-away network namespace
    (10.0.2.1/24 on the host side):
      tx  guest -> host: the guest sends 1514-byte UDP frames to 10.0.2.1
          port 9; nobody listens, so the host kernel receives and drops them
          (its ICMP port-unreachable answers are rate limited and ignored);
      rx  host -> guest: a Python sender in the namespace writes the same
          1514-byte UDP frame (to 10.0.2.15 port 9, the guest's MAC) to the
          TAP through an AF_PACKET socket as fast as it can; the TAP drops what
          the VMM does not take. The guest counts what arrives.
  * VMM CPU per request: user+sys CPU seconds of the VMM process (os.wait4
    rusage) divided by the requests/frames the guest reports. That includes
    the vCPU thread, and the guests busy-poll, so it is mostly guest time; the
    second figure counts only the VMM's other threads (the device/event-loop
    and I/O threads: every thread with no guest time in /proc/PID/task/*/stat,
    sampled every 50 ms until exit), i.e. the cost of emulating the device.

Runs alternate skiff, QEMU, skiff, QEMU (the repetition is the outer loop, so
drift over the whole run hits both alike). Prints medians (min-max) side by
side with the ratio skiff/QEMU. Needs root for the network namespace (net
figures are skipped otherwise), /dev/kvm, qemu-system-x86_64 and qemu-img.

    Benchmarks/device-bench.py [--runs 3] [--secs 2] [--skiff PATH] [--no-qcow2] [--no-net] [--no-blk]
                               [--net-event-idx] [--baseline PATH]

With --baseline PATH a second skiff binary (e.g. the release build of the branch
point) runs too, in the same alternation (skiff, baseline, QEMU), in its own
column, with the ratio skiff/baseline: before and after figures from one run.
"""
import argparse, os, re, shlex, signal, shutil, statistics, subprocess, sys, tempfile, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HZ = os.sysconf("SC_CLK_TCK")
MAC = "52:54:00:12:34:56"
QEMU_DEV = "virtio_mmio.device=512@0xfeb02e00:47"  # microvm's first transport (ACPI on)

# (key, label, guest, command line, primary unit)
BLK = [
    ("seq", "seq read 128K qd8", "blk.bench=seq blk.bs=131072 blk.qd=8", "MiB/s"),
    ("seqwrite", "seq write 128K qd8", "blk.bench=seqwrite blk.bs=131072 blk.qd=8", "MiB/s"),
    ("rand1", "rand read 4K qd1", "blk.bench=rand blk.bs=4096 blk.qd=1", "IOPS"),
    ("rand32", "rand read 4K qd32", "blk.bench=rand blk.bs=4096 blk.qd=32", "IOPS"),
    ("randwrite1", "rand write 4K qd1", "blk.bench=randwrite blk.bs=4096 blk.qd=1", "IOPS"),
    ("randwrite32", "rand write 4K qd32", "blk.bench=randwrite blk.bs=4096 blk.qd=32", "IOPS"),
]
QCOW2_KEYS = ("seq", "seqwrite", "rand32", "randwrite32")  # keeps the whole run near 5 minutes

BLASTER = r"""
import socket, struct, sys
tap, dst, size = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((tap, 0))
src = s.getsockname()[4][:6]
payload = size - 14 - 20 - 8
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + payload, 0, 0x4000, 64, 17, 0,
                 socket.inet_aton("10.0.2.1"), socket.inet_aton("10.0.2.15"))
c = sum(struct.unpack("!10H", ip)); c = (c & 0xffff) + (c >> 16); c = (c & 0xffff) + (c >> 16)
ip = ip[:10] + struct.pack("!H", ~c & 0xffff) + ip[12:]
frame = dst + src + b"\x08\x00" + ip + struct.pack("!HHHH", 5001, 9, 8 + payload, 0) + bytes(payload)
send = s.send
while True:
    try:
        send(frame)
    except OSError:
        pass
"""


class Failure(Exception):
    pass


def sh(*cmd):
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def thread_times(pid, threads):
    """Updates threads[tid] = (user+sys ticks, guest ticks) from /proc; ignores races with exit."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        threads[tid] = (int(fields[11]) + int(fields[12]), int(fields[40]))


def run_vmm(cmd, timeout):
    """Runs one VMM to completion. Returns (exit status, output, total CPU s, non-vCPU-thread CPU s)."""
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        RUNNING.add(p.pid)
        threads, deadline = {}, time.monotonic() + timeout
        try:
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    os.killpg(p.pid, signal.SIGKILL)
                    pid, status, ru = os.wait4(p.pid, 0)
                    status = -1
                    break
                thread_times(p.pid, threads)
                time.sleep(0.05)
        finally:
            RUNNING.discard(p.pid)
        p.returncode = status  # reaped by wait4 above
        out.seek(0)
        text = out.read()
    cpu = ru.ru_utime + ru.ru_stime
    device = sum(t for t, guest in threads.values() if guest == 0) / HZ
    code = -1 if status == -1 else os.waitstatus_to_exitcode(status)
    return code, text, cpu, device


def parse(text, guest):
    if guest == "blk":
        m = re.search(r"blk: bench result mode=\S+ ops=(\d+) bytes=(\d+) usecs=(\d+) errors=(\d+)", text)
        if not m:
            return None
        ops, nbytes, us, errors = map(int, m.groups())
        if errors:
            return None
    else:
        m = re.search(r"net: bench result mode=\S+ frames=(\d+) bytes=(\d+) usecs=(\d+)", text)
        if not m:
            return None
        ops, nbytes, us = map(int, m.groups())
    if not ops or not us:
        return None
    qd = re.search(r"blk: bench \S+ bs=\d+ qd=(\d+)", text)
    return {"qd": int(qd.group(1)) if qd else None, "ops": ops, "MiB/s": nbytes / us * 1e6 / 2**20, "IOPS": ops / us * 1e6, "pps": ops / us * 1e6}


def commands(skiff, guest, cmdline, disk=None, fmt=None, netns=None, tap=None):
    elf = os.path.join(REPO, "firmware", "out", guest + ".elf")
    s = [skiff, "run", "--kernel", elf, "--memory", "64M", "--cmdline", cmdline]
    q = ["qemu-system-x86_64", "-M", "microvm", "-enable-kvm", "-cpu", "host,-arch-capabilities",
         "-m", "64M", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
         "-no-reboot", "-global", "virtio-mmio.force-legacy=false", "-kernel", elf]
    if disk:
        s += ["--disk", f"path={disk},format={fmt}"]
        q += ["-drive", f"id=d0,file={disk},format={fmt},if=none,cache=writeback,aio=threads",
              "-device", "virtio-blk-device,drive=d0"]
    if tap:
        s += ["--net", f"tap={tap},mac={MAC}"]
        q += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
              "-device", f"virtio-net-device,netdev=n0,mac={MAC}"]
    q += ["-append", f"{QEMU_DEV} {cmdline}"]
    if netns:
        s, q = ["ip", "netns", "exec", netns] + s, ["ip", "netns", "exec", netns] + q
    return {"skiff": s, "qemu": q}


def with_baseline(cmds, skiff, baseline):
    """Adds the same skiff command line run with the baseline binary."""
    if baseline:
        cmds["base"] = [baseline if word == skiff else word for word in cmds["skiff"]]
    return cmds


RUNNING = set()


def cleanup(state):
    for pid in list(RUNNING):
        try:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
    if state.get("netns"):
        subprocess.run(["ip", "netns", "del", state["netns"]], stderr=subprocess.DEVNULL)
    if state.get("tmp"):
        shutil.rmtree(state["tmp"], ignore_errors=True)


def make_images(tmp, size_mib, qcow2):
    raw = os.path.join(tmp, "disk.raw")
    block = os.urandom(1 << 20)  # random data: nothing sparse, qemu-img convert keeps every cluster
    with open(raw, "wb") as f:
        for _ in range(size_mib):
            f.write(block)
    images = {"raw": raw}
    if qcow2:
        images["qcow2"] = os.path.join(tmp, "disk.qcow2")
        sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, images["qcow2"])
    return images


def make_netns(name, tap):
    sh("ip", "netns", "add", name)
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
                ["ip", "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr"],
                ["ip", "addr", "add", "10.0.2.1/24", "dev", tap],
                ["ip", "link", "set", tap, "up"]):
        sh("ip", "netns", "exec", name, *cmd)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=2, help="guest measuring time per run (blk.secs=, net.secs=)")
    ap.add_argument("--disk-size", type=int, default=256, help="image size in MiB (blk.span= is the whole disk)")
    ap.add_argument("--no-qcow2", action="store_true", help="raw image only")
    ap.add_argument("--no-net", action="store_true", help="skip the virtio-net figures")
    ap.add_argument("--no-blk", action="store_true", help="skip the virtio-blk figures")
    ap.add_argument("--net-event-idx", action="store_true",
                    help="also measure net with virtio.event_idx (the guest negotiates EVENT_IDX, as Linux does)")
    # This checkout's own release build, wherever the repository lives.
    ap.add_argument("--skiff", default=os.path.join(REPO, ".build", "release", "skiff"),
                    help="the skiff binary (default: .build/release/skiff of this repository)")
    ap.add_argument("--baseline", metavar="PATH",
                    help="another skiff binary measured alongside (before/after in one run)")
    args = ap.parse_args()
    if args.baseline and not os.path.exists(args.baseline):
        sys.exit(f"device-bench: {args.baseline} is missing")
    if not os.path.exists(args.skiff):
        sys.exit(f"device-bench: {args.skiff} is missing; run `swift build -c release --static-swift-stdlib` first")
    net = not args.no_net
    if net and os.geteuid() != 0:
        print("device-bench: not root, skipping the virtio-net figures (they need a network namespace)", file=sys.stderr)
        net = False
    subprocess.run([os.path.join(REPO, "scripts", "build-firmware.sh"), "blk", "net"], check=True,
                   stdout=subprocess.DEVNULL)

    state = {}

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        state["tmp"] = tempfile.mkdtemp(prefix="device-bench.", dir="/var/tmp")
        images = {} if args.no_blk else make_images(state["tmp"], args.disk_size, not args.no_qcow2)
        secs = args.secs
        # figure: key -> (label, unit, commands, needs blaster)
        figures = []
        for fmt, path in images.items():
            for key, label, cmdline, unit in BLK:
                if fmt == "qcow2" and key not in QCOW2_KEYS:
                    continue
                cmd = with_baseline(commands(args.skiff, "blk", f"{cmdline} blk.secs={secs}", disk=path, fmt=fmt),
                                    args.skiff, args.baseline)
                figures.append((f"{fmt} {label}", unit, "blk", cmd, False))
        if net:
            state["netns"] = f"devbench{os.getpid()}"
            tap = "dbtap0"
            make_netns(state["netns"], tap)
            for extra in ([""] + ([" virtio.event_idx"] if args.net_event_idx else [])):
                for mode, label in (("tx", "net tx guest->host 1514B"), ("rx", "net rx host->guest 1514B")):
                    cmd = with_baseline(commands(args.skiff, "net", f"net.bench={mode} net.size=1514 net.secs={secs}{extra}",
                                                 netns=state["netns"], tap=tap), args.skiff, args.baseline)
                    figures.append((label + (" EVENT_IDX" if extra else ""), "pps", "net", cmd, mode == "rx"))
        blaster_cmd = ["ip", "netns", "exec", state.get("netns", ""), sys.executable, "-c", BLASTER,
                       "dbtap0", MAC, "1514"]

        vmms = ("skiff", "base", "qemu") if args.baseline else ("skiff", "qemu")
        results = {f[0]: {name: [] for name in vmms} for f in figures}
        failures, notes = {}, set()
        timeout = secs + 60
        # Warm-up: first-run costs (page cache of the binaries, KVM module state).
        if images:
            warm = commands(args.skiff, "blk", "blk.bench=seq blk.secs=1", disk=images["raw"], fmt="raw")
        else:
            warm = commands(args.skiff, "net", "net.bench=tx net.secs=1", netns=state.get("netns"), tap="dbtap0")
        for name in ("skiff", "qemu"):
            run_vmm(warm[name], timeout)
        started = time.monotonic()
        for rep in range(args.runs):
            for label, unit, guest, cmds, blast in figures:
                for name in vmms:
                    blaster = None
                    if blast:
                        blaster = subprocess.Popen(blaster_cmd, stdin=subprocess.DEVNULL, start_new_session=True)
                        RUNNING.add(blaster.pid)
                        time.sleep(0.3)
                    try:
                        code, text, cpu, device = run_vmm(cmds[name], timeout)
                    finally:
                        if blaster:
                            os.killpg(blaster.pid, signal.SIGKILL)
                            blaster.wait()
                            RUNNING.discard(blaster.pid)
                    r = parse(text, guest)
                    if code != 0 or r is None:
                        lines = [l for l in text.splitlines() if l.startswith(guest + ":") or "error" in l.lower()]
                        failures.setdefault((label, name), (code, lines))
                        continue
                    want = re.search(r"blk\.qd=(\d+)", " ".join(cmds[name]))
                    if want and r["qd"] != int(want.group(1)):
                        notes.add(f"{label} on {name}: the guest used qd={r['qd']}, not {want.group(1)}")
                    r["cpu"] = cpu / r["ops"] * 1e6
                    r["dev"] = device / r["ops"] * 1e6
                    results[label][name].append(r)
            print(f"device-bench: round {rep + 1}/{args.runs} done after {time.monotonic() - started:.0f} s",
                  file=sys.stderr)

        print(f"device-bench: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{args.runs} runs each (alternating), {secs} s per run, medians (min-max)")
        print(f"skiff: {args.skiff}; QEMU: {subprocess.run(['qemu-system-x86_64', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")
        print(f"disk: {args.disk_size} MiB image in the page cache; skiff buffered (I/O threads), QEMU cache=writeback,aio=threads")
        if args.baseline:
            print(f"baseline: {args.baseline}; loadavg at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}")
        base_head = f"{'baseline':>26}{'skiff/base':>11}" if args.baseline else ""
        print(f"{'figure':<44}{'skiff':>26}{base_head}{'QEMU microvm':>26}{'skiff/QEMU':>12}  goal (#11)")

        def cell(values):
            if not values:
                return "FAIL"
            m = statistics.median(values)
            fmtv = (lambda v: f"{v:.0f}") if m >= 100 else (lambda v: f"{v:.2f}" if m < 10 else f"{v:.1f}")
            return f"{fmtv(m)} ({fmtv(min(values))}-{fmtv(max(values))})"

        def row(label, key, res, goal=None):
            # goal: (">=" or "<=", ratio) for the skiff/QEMU column, printed with whether it is met.
            s = [r[key] for r in res["skiff"]]
            q = [r[key] for r in res["qemu"]]
            base = ""
            if args.baseline:
                b = [r[key] for r in res["base"]]
                vb = statistics.median(s) / statistics.median(b) if s and b else None
                base = f"{cell(b):>26}{(f'{vb:.2f}' if vb is not None else '-'):>11}"
            value = statistics.median(s) / statistics.median(q) if s and q else None
            ratio = f"{value:.2f}" if value is not None else "-"
            mark = ""
            if goal:
                met = value is not None and (value >= goal[1] if goal[0] == ">=" else value <= goal[1])
                mark = f"  {goal[0]} {goal[1]:.1f} {'met' if met else 'NOT met'}"
            print(f"{label:<44}{cell(s):>26}{base}{cell(q):>26}{ratio:>12}{mark}")

        def blk_goal(label):
            # #11: sequential at least level with QEMU, random at least 1.2x ahead.
            return (">=", 1.0) if " seq " in f" {label.split(' ', 1)[1]} " else (">=", 1.2)

        for label, unit, guest, cmds, blast in figures:
            res = results[label]
            # Issue #11's goals: blk as blk_goal says; net >= 1.1x QEMU's packets/s,
            # and VMM CPU per request/frame <= QEMU's.
            row(f"{label} ({unit})", unit, res, blk_goal(label) if guest == "blk" else (">=", 1.1))
            if guest == "net":
                row("  MiB/s", "MiB/s", res)
            req = "frame" if guest == "net" else "request"
            row(f"  VMM CPU us/{req}, all threads", "cpu", res, ("<=", 1.0))
            row(f"  VMM CPU us/{req}, non-vCPU threads", "dev", res, ("<=", 1.0) if guest == "net" else None)
        for n in sorted(notes):
            print(f"note: {n}")
        if failures:
            print("failures (first of each figure/VMM):")
            for (label, name), (code, lines) in failures.items():
                print(f"  {label} on {name}: exit {code}")
                for l in lines[-6:]:
                    print(f"    {l}")
        print("commands (first figure of each guest; the others change only the guest command line / format):")
        shown = set()
        for label, unit, guest, cmds, blast in figures:
            if guest in shown:
                continue
            shown.add(guest)
            for name in ("skiff", "qemu"):
                print(f"  {name}: {shlex.join(cmds[name])}")
        if net:
            print(f"  rx sender: {shlex.join(blaster_cmd[:5])} -c BLASTER dbtap0 {MAC} 1514"
                  " (AF_PACKET, the same UDP frame in a loop)")
        if failures:
            raise SystemExit(1)
    finally:
        cleanup(state)


if __name__ == "__main__":
    main()
