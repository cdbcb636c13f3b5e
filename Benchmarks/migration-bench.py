#!/usr/bin/env python3
"""Live-migration benchmark: Skiff (`skiff migrate`, with a key and with
`--insecure-migration`) versus QEMU microvm (QMP `migrate` to `tcp:`, its
default downtime limit and a 10 ms `downtime-limit`), same guest, same run,
over loopback TCP.

The guest is the `count` firmware (a CPL3 loop printing `count N` every
`count.every` increments; here every 2x10^6, a line every few milliseconds),
idle with 256 MiB and 1 GiB of RAM (4 GiB with --sizes), and a memory-dirtying
one (256 MiB, `count.dirty=32`: 32 MiB rewritten round-robin, a page every 64
increments, its pages checked before every line; --dirty to change), and a
filled one (1 GiB, `count.fill=960`: 960 MiB written once at start and never
again, so all of it crosses the wire exactly once; --filled to change). For
each configuration, over N runs (alternating VMMs, so drift hits all alike):
  * total: the VMM's own figure (Skiff: the `migrated: total ...` summary of
    `skiff migrate`; QEMU: `query-migrate`'s total-time);
  * downtime, VMM: as each VMM reports it (Skiff: pause -> destination running;
    QEMU: query-migrate's downtime);
  * stall, guest: what the guest sees. Both VMMs' serial output is read by this
    script as it comes, each line stamped with one clock; the stall is the time
    from the source's last `count` line to the destination's first. With a
    line every few ms, that is the downtime plus at most one line period; the
    table also gives the median gap between consecutive lines of the source
    before the migration (the "line period"), the stall's floor. The sequence
    must continue (destination's first = source's last + every) or the run fails;
  * bytes: what went over the wire (Skiff: the summary's bytes, including
    framing; QEMU: ram.transferred);
  * dest. CPU: CPU seconds of the destination's threads that run no guest
    code (receiving the stream, and its small set-up), per GiB sent;
  * throughput: bytes / total. An idle guest's RAM is mostly never-touched
    (Skiff skips it, QEMU sends a zero-page marker), so its figure is dominated
    by fixed costs; the filled guest's is the stream's own throughput, the
    dirtying guest's what a busy guest gets.
Prints medians (min-max) side by side with the ratio Skiff/QEMU (against
QEMU's default downtime limit). QEMU runs with its defaults (no auto-converge);
a QEMU migration still going after 60 s is cancelled and counted as not
finished ("[k/N]" after a cell: only k of N runs finished).

    Benchmarks/migration-bench.py [--runs N] [--sizes 256M,1G] [--dirty RAM:OPTS] [--filled RAM:OPTS] [--skiff PATH] [--baseline PATH] [--no-qemu]

For idle guests it also prints Skiff's switch-over step by step, from both
processes' `--log-level info` lines: pause, last pages, state read, state
encoded, destination ready (of which state decoded and applied), and `running`
after the commit.

--baseline PATH adds two columns, another skiff binary (an earlier build)
with a key and plain, in the same alternation: before/after figures from one run.
"""
import argparse, os, re, shutil, socket, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from importlib import import_module
snapshot_bench = import_module("snapshot-bench")
QMP = snapshot_bench.QMP
wait_for_socket = snapshot_bench.wait_for_socket

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERY = 2000000
QEMU_BOUND = 60  # s; QEMU has no auto-converge by default, so a fast dirtier may never finish
LINE = re.compile(rb"^count (\d+)$")


class Lines:
    """Reads a process's stdout on a thread: every chunk with its time, and
    every whole `count N` line with the time it completed."""

    def __init__(self, proc):
        self.proc, self.chunks, self.counts, self.lock = proc, [], [], threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        buffer = b""
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            now = time.perf_counter()
            buffer += chunk
            *whole, buffer = buffer.split(b"\n")
            with self.lock:
                self.chunks.append((now, chunk))
                for line in whole:
                    m = LINE.match(line.rstrip(b"\r"))
                    if m:
                        self.counts.append((now, int(m.group(1))))

    def snapshot(self):
        with self.lock:
            return list(self.chunks), list(self.counts)

    def wait_for(self, n, timeout):
        deadline = time.perf_counter() + timeout
        while len(self.snapshot()[1]) < n:
            if time.perf_counter() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"only {len(self.snapshot()[1])} count lines (exit {self.proc.poll()})")
            time.sleep(0.005)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(cmd, stderr=subprocess.DEVNULL):
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def wait_for_text(path, text, proc, timeout=30):
    deadline = time.time() + timeout
    while text not in open(path, errors="replace").read():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{text!r} not seen in {path}")
        time.sleep(0.005)


def guest_figures(src, dst, source_done):
    """(stall s, line period s): the source's last output to the destination's
    first (the guest may be paused mid-line: the destination then prints the
    rest of that line first), and the median time between the source's lines.
    The joined output must count on with no gap or repeat."""
    dst.wait_for(3, 60)
    if source_done:
        src.thread.join(5)
    (schunks, slines), (dchunks, _) = src.snapshot(), dst.snapshot()
    joined = b"".join(c for _, c in schunks) + b"".join(c for _, c in dchunks)
    counts = [int(m.group(1)) for m in (LINE.match(l.rstrip(b"\r")) for l in joined.split(b"\n")[:-1]) if m]
    if counts != [EVERY * (i + 1) for i in range(len(counts))]:
        tail = [c for c in counts if c >= slines[-1][1] - 2 * EVERY][:6]
        raise RuntimeError(f"the joined output does not count on: ... {tail}")
    gaps = [b[0] - a[0] for a, b in zip(slines, slines[1:])]
    return dchunks[0][0] - schunks[-1][0], statistics.median(gaps)


SWITCH_OVER = re.compile(r"migration switch-over: paused in ([\d.]+) ms, last \d+ page\(s\).*? sent in ([\d.]+) ms, "
                         r"state read in ([\d.]+) ms and encoded \(\d+ bytes\) in ([\d.]+) ms, "
                         r"destination ready after ([\d.]+) ms, running after ([\d.]+) ms")
STATE_APPLIED = re.compile(r"migration state decoded in ([\d.]+) ms, (?:machine with its disks built in [\d.]+ ms, )?"
                           r"applied in ([\d.]+) ms")
# The switch-over's steps (ms), from the source's and the destination's `--log-level info` lines.
STEPS = ["pause", "last pages", "state read", "state encoded", "destination ready", "  state decoded",
         "  state applied", "running after commit"]


def breakdown(src_err, dst_err):
    """The switch-over's steps in seconds (None where a log line is missing)."""
    src = SWITCH_OVER.search(open(src_err, errors="replace").read())
    dst = STATE_APPLIED.search(open(dst_err, errors="replace").read())
    if not src or not dst:
        return None
    s = [float(x) / 1000 for x in src.groups()]
    d = [float(x) / 1000 for x in dst.groups()]
    return s[:5] + d + s[5:]


def device_cpu(pid):
    """CPU seconds (user + system) of the process's threads that ran no guest code:
    on a destination, receiving the stream (plus its small set-up)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[40]) == 0:  # guest_time (field 43): 0 for every thread but the vCPUs'
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def skiff_round(skiff, elf, memory, extra, key, work):
    sock, err = os.path.join(work, "src.sock"), os.path.join(work, "dst.err")
    src_err = os.path.join(work, "src.err")
    security = ["--migration-key", key] if key else ["--insecure-migration"]
    port = free_port()
    dst = start([skiff, "run", "--incoming", f"tcp:127.0.0.1:{port}", "--log-level", "info"] + security,
                stderr=open(err, "w"))
    src = start([skiff, "run", "--kernel", elf, "--memory", memory, "--cmdline", f"count.every={EVERY} {extra}",
                 "--api-socket", sock, "--log-level", "info"], stderr=open(src_err, "w"))
    try:
        s, d = Lines(src), Lines(dst)
        s.wait_for(20, 60)
        wait_for_socket(sock, src)
        wait_for_text(err, "waiting for an incoming VM", dst)
        run = subprocess.run([skiff, "migrate", "--api-socket", sock] + security + [f"tcp:127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=300)
        m = re.match(r"migrated: total ([\d.]+) ms, downtime ([\d.]+) ms, (\d+) bytes", run.stdout)
        if run.returncode != 0 or not m:
            raise RuntimeError(f"skiff migrate: {run.stdout} {run.stderr}")
        if src.wait(30) != 0:
            raise RuntimeError("the source did not exit 0")
        stall, period = guest_figures(s, d, True)
        return (float(m.group(1)) / 1000, float(m.group(2)) / 1000, stall, period, int(m.group(3)),
                breakdown(src_err, err), device_cpu(dst.pid))
    finally:
        stop(src)
        stop(dst)


def qemu_cmd(elf, memory, extra, qmp, more):
    return ["qemu-system-x86_64", "-M", "microvm,memory-backend=mem", "-enable-kvm",
            "-cpu", "host,-arch-capabilities", "-m", memory,
            "-object", "memory-backend-memfd,id=mem,size=" + memory,
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", elf, "-append", f"count.every={EVERY} {extra}", "-serial", "stdio",
            "-qmp", f"unix:{qmp},server=on,wait=off"] + more


def qemu_round(elf, memory, extra, downtime_ms, work):
    sq, dq = os.path.join(work, "src.qmp"), os.path.join(work, "dst.qmp")
    port = free_port()
    dst = start(qemu_cmd(elf, memory, extra, dq, ["-incoming", f"tcp:127.0.0.1:{port}"]))
    src = start(qemu_cmd(elf, memory, extra, sq, []))
    try:
        s, d = Lines(src), Lines(dst)
        s.wait_for(20, 60)
        wait_for_socket(dq, dst)
        qmp = QMP(sq)
        if downtime_ms is not None:
            qmp.cmd("migrate-set-parameters", **{"downtime-limit": downtime_ms})
        qmp.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        deadline = time.perf_counter() + QEMU_BOUND
        while True:
            info = qmp.cmd("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.perf_counter() > deadline:
                qmp.cmd("migrate_cancel")
                return None  # did not converge within the bound
            time.sleep(0.001)
        if info["status"] != "completed":
            raise RuntimeError(f"QEMU migrate: {info}")
        qmp.close()
        stall, period = guest_figures(s, d, False)
        return (info["total-time"] / 1000, info["downtime"] / 1000, stall, period, info["ram"]["transferred"], None,
                device_cpu(dst.pid))
    finally:
        stop(src)
        stop(dst)


def cell(values, scale, fmt, runs):
    v = [x * scale for x in values]
    if not v:
        return "did not finish"
    done = "" if len(v) == runs else f" [{len(v)}/{runs}]"
    return f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}-{fmt.format(max(v))}){done}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="256M,1G")
    ap.add_argument("--dirty", default="256M:count.dirty=32", help="RAM:options of the dirtying guest ('' for none)")
    ap.add_argument("--filled", default="1G:count.fill=960",
                    help="RAM:options of the filled guest, whose RAM is all sent once ('' for none)")
    ap.add_argument("--skiff", default=os.path.join(REPO, ".build", "release", "skiff"))
    ap.add_argument("--baseline", help="another skiff binary to compare, in the same run")
    ap.add_argument("--no-qemu", action="store_true", help="Skiff only (quicker; no ratios)")
    args = ap.parse_args()
    if not os.path.exists(args.skiff):
        sys.exit(f"migration-bench: {args.skiff} is missing; run `swift build -c release --product skiff` first")
    subprocess.run([os.path.join(REPO, "scripts", "build-firmware.sh"), "count"], check=True, stdout=subprocess.DEVNULL)
    elf = os.path.join(REPO, "firmware", "out", "count.elf")
    keydir = tempfile.mkdtemp(prefix="migration-bench-key-")
    key = os.path.join(keydir, "key")
    subprocess.run([args.skiff, "migration-key", key], check=True, stdout=subprocess.DEVNULL)

    configs = [(m, "idle", "") for m in args.sizes.split(",") if m]
    if args.dirty:
        memory, options = args.dirty.split(":", 1)
        configs.append((memory, "dirty " + options.replace("count.dirty=", "") + " MiB", options))
    if args.filled:
        memory, options = args.filled.split(":", 1)
        configs.append((memory, "filled " + options.replace("count.fill=", "") + " MiB", options))
    vmms = [("skiff key", lambda m, x, w: skiff_round(args.skiff, elf, m, x, key, w)),
            ("skiff plain", lambda m, x, w: skiff_round(args.skiff, elf, m, x, None, w)),
            ("QEMU", lambda m, x, w: qemu_round(elf, m, x, None, w)),
            ("QEMU 10ms", lambda m, x, w: qemu_round(elf, m, x, 10, w))]
    if args.no_qemu:
        del vmms[2:]
    if args.baseline:
        vmms[2:2] = [("baseline key", lambda m, x, w: skiff_round(args.baseline, elf, m, x, key, w)),
                     ("baseline plain", lambda m, x, w: skiff_round(args.baseline, elf, m, x, None, w))]
    print(f"migration-bench: count firmware (count.every={EVERY}), loopback TCP, {args.runs} runs each, "
          f"medians (min-max); load average {os.getloadavg()[0]:.1f}")
    print(f"{'guest':<20}{'figure':<22}" + "".join(f"{n:>26}" for n, _ in vmms) + f"{'key/QEMU':>10}{'plain/QEMU':>11}")
    try:
        for memory, label, options in configs:
            results = {n: [] for n, _ in vmms}
            for _ in range(args.runs):
                for name, fn in vmms:
                    work = tempfile.mkdtemp(prefix="migration-bench-")
                    try:
                        results[name].append(fn(memory, options, work))
                    finally:
                        shutil.rmtree(work, ignore_errors=True)
            rows = [("total (ms)", 0, 1000.0, "{:.1f}"), ("downtime, VMM (ms)", 1, 1000.0, "{:.2f}"),
                    ("stall, guest (ms)", 2, 1000.0, "{:.2f}"), ("line period (ms)", 3, 1000.0, "{:.2f}"),
                    ("bytes (MiB)", 4, 1 / 1048576, "{:.1f}"), ("throughput (MiB/s)", "rate", 1.0, "{:.0f}"),
                    ("dest. CPU (s/GiB)", "cpu", 1.0, "{:.2f}")]
            figure = {"rate": lambda r: r[4] / 1048576 / r[0], "cpu": lambda r: r[6] / (r[4] / 2**30)}
            for row, i, scale, fmt in rows:
                col = {n: [figure[i](r) if isinstance(i, str) else r[i] for r in rs if r] for n, rs in results.items()}
                med = {n: statistics.median(v) if v else None for n, v in col.items()}
                ratio = lambda n: f"{med[n] / med['QEMU']:.2f}" if med[n] is not None and med.get("QEMU") else "-"
                print(f"{memory + ' ' + label:<20}{row:<22}"
                      + "".join(f"{cell(col[n], scale, fmt, args.runs):>26}" for n, _ in vmms)
                      + f"{ratio('skiff key'):>10}{ratio('skiff plain'):>11}", flush=True)
            if label != "idle":
                continue
            for k, step in enumerate(STEPS):  # Skiff's switch-over, step by step (idle guests)
                col = {n: [r[5][k] for r in rs if r and r[5]] for n, rs in results.items()}
                print(f"{memory + ' ' + label:<20}{step + ' (ms)':<22}"
                      + "".join(f"{(cell(col[n], 1000.0, '{:.2f}', args.runs) if col[n] else '-'):>26}"
                                for n, _ in vmms), flush=True)
    finally:
        shutil.rmtree(keydir, ignore_errors=True)


if __name__ == "__main__":
    main()
