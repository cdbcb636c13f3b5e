#!/usr/bin/env python3
"""Snapshot benchmark: Skiff's snapshot/restore versus QEMU microvm's
`migrate "exec:cat > FILE"` / `-incoming "exec:cat FILE"`, same guest, same run.

The guest is the `count` firmware (a CPL3 loop printing `count N` every
`count.every` increments), given 256 MiB, 1 GiB and 4 GiB of RAM. For each VMM
and size, over N runs (alternating VMMs, so drift hits both alike):
  * snapshot: the time of the request on the control socket (Skiff: `PUT
    vm.snapshot` over its API socket; QEMU: QMP `migrate` to a file, until
    `query-migrate` says completed), the VM running before and after;
  * size: the snapshot's disk usage (`du`: blocks allocated, all files);
  * restore: process start -> the first complete `count N` line the restored
    guest prints on the serial port (Skiff: `skiff run --restore DIR`; QEMU:
    `-incoming "exec:cat FILE"`, which resumes the guest when it has loaded);
  * continuity: the restored guest's first line must be the saved one plus
    `every` (or the next after it) -- a restore that reboots fails the bench.
Prints medians (and min-max) side by side with the ratio Skiff/QEMU.

    Benchmarks/snapshot-bench.py [--runs N] [--sizes 256M,1G,4G] [--skiff PATH]
"""
import argparse, json, os, re, select, shutil, socket, statistics, subprocess, sys, tempfile, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERY = 2000000          # a line every ~2 ms of guest CPL3 time
LINE = re.compile(rb"^count (\d+)$")


class SerialReader:
    """Reads a VMM's stdout, keeping whole lines and when each arrived."""

    def __init__(self, proc):
        self.proc, self.buffer, self.lines = proc, b"", []

    def wait_for(self, predicate, timeout):
        deadline = time.perf_counter() + timeout
        while True:
            for stamp, line in self.lines:
                if predicate(line):
                    return stamp, line
            left = deadline - time.perf_counter()
            if left <= 0 or self.proc.poll() is not None and not self._pending():
                raise RuntimeError(f"no matching serial line within {timeout}s (exit {self.proc.poll()})")
            self._read(min(left, 0.05))

    def drain(self):
        while self._pending():
            self._read(0)
        self.lines = []

    def _pending(self):
        return bool(select.select([self.proc.stdout], [], [], 0)[0])

    def _read(self, timeout):
        if select.select([self.proc.stdout], [], [], timeout)[0]:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                time.sleep(timeout)
                return
            now = time.perf_counter()
            self.buffer += chunk
            *whole, self.buffer = self.buffer.split(b"\n")
            self.lines += [(now, l.rstrip(b"\r")) for l in whole]


def count_of(line):
    m = LINE.match(line)
    return int(m.group(1)) if m else None


def du_bytes(path):
    out = subprocess.run(["du", "-s", "-B1", path], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def http_put(sock_path, endpoint, body):
    """One HTTP/1.1 PUT over a unix socket; returns (status, body)."""
    payload = json.dumps(body).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(b"PUT /api/v1/" + endpoint.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
              b"Content-Type: application/json\r\nConnection: close\r\n"
              b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[-1]


class QMP:
    def __init__(self, path, timeout=20):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.01)
        self.f = self.s.makefile("rwb")
        self.f.readline()  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.f.flush()
        while True:
            reply = json.loads(self.f.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {name}: {reply['error']}")

    def close(self):
        self.s.close()


def wait_for_socket(path, proc, timeout=20):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"control socket {path} did not appear")
        time.sleep(0.002)


def start(cmd):
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def cmdline():
    return f"count.every={EVERY}"


def skiff_round(skiff, elf, memory, work):
    sock = os.path.join(work, "vm.sock")
    snap = os.path.join(work, "snap")
    proc = start([skiff, "run", "--kernel", elf, "--memory", memory, "--cmdline", cmdline(), "--api-socket", sock])
    try:
        reader = SerialReader(proc)
        reader.wait_for(lambda l: (count_of(l) or 0) >= 5 * EVERY, 30)
        wait_for_socket(sock, proc)
        t0 = time.perf_counter()
        status, body = http_put(sock, "vm.snapshot", {"destination_url": "file://" + snap})
        snap_time = time.perf_counter() - t0
        if status // 100 != 2:
            raise RuntimeError(f"vm.snapshot answered {status}: {body!r}")
    finally:
        stop(proc)
    size = du_bytes(snap)
    saved = json.load(open(os.path.join(snap, "manifest.json")))  # proves it is a finished snapshot
    t0 = time.perf_counter()
    proc = start([skiff, "run", "--restore", snap])
    try:
        stamp, line = SerialReader(proc).wait_for(lambda l: count_of(l) is not None, 30)
    finally:
        stop(proc)
    shutil.rmtree(snap)
    return snap_time, size, stamp - t0, count_of(line), saved


def qemu_base(elf, memory, serial_args):
    return ["qemu-system-x86_64", "-M", "microvm,memory-backend=mem", "-enable-kvm",
            "-cpu", "host,-arch-capabilities", "-m", memory,
            "-object", "memory-backend-memfd,id=mem,size=" + memory,
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", elf, "-append", cmdline()] + serial_args


def qemu_round(elf, memory, work):
    qmp_path = os.path.join(work, "qmp.sock")
    image = os.path.join(work, "vm.state")
    proc = start(qemu_base(elf, memory, ["-serial", "stdio", "-qmp", f"unix:{qmp_path},server=on,wait=off"]))
    try:
        reader = SerialReader(proc)
        reader.wait_for(lambda l: (count_of(l) or 0) >= 5 * EVERY, 30)
        qmp = QMP(qmp_path)
        t0 = time.perf_counter()
        qmp.cmd("migrate", uri=f"exec:cat > {image}")
        while qmp.cmd("query-migrate").get("status") not in ("completed", "failed", "cancelled"):
            time.sleep(0.0005)
        snap_time = time.perf_counter() - t0
        if qmp.cmd("query-migrate")["status"] != "completed":
            raise RuntimeError("QEMU migrate to file failed")
        qmp.close()
    finally:
        stop(proc)
    size = du_bytes(image)
    t0 = time.perf_counter()
    proc = start(qemu_base(elf, memory, ["-serial", "stdio", "-incoming", f"exec:cat {image}"]))
    try:
        stamp, line = SerialReader(proc).wait_for(lambda l: count_of(l) is not None, 30)
    finally:
        stop(proc)
    os.unlink(image)
    return snap_time, size, stamp - t0, count_of(line), None


def summary(values):
    return statistics.median(values), min(values), max(values)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="256M,1G,4G")
    ap.add_argument("--skiff", default=os.path.join(REPO, ".build", "release", "skiff"))
    args = ap.parse_args()
    if not os.path.exists(args.skiff):
        sys.exit(f"snapshot-bench: {args.skiff} is missing; run `swift build -c release --static-swift-stdlib` first")
    subprocess.run([os.path.join(REPO, "scripts", "build-firmware.sh"), "count"], check=True, stdout=subprocess.DEVNULL)
    elf = os.path.join(REPO, "firmware", "out", "count.elf")

    load = os.getloadavg()[0]
    print(f"snapshot-bench: count firmware (count.every={EVERY}), {args.runs} runs per VMM and size, "
          f"medians (min-max); load average {load:.1f}")
    print(f"{'RAM':<6}{'figure':<40}{'skiff':>28}{'QEMU microvm':>28}{'skiff/QEMU':>12}")
    for memory in args.sizes.split(","):
        results = {"skiff": [], "qemu": []}
        for _ in range(args.runs):
            for name in ("skiff", "qemu"):
                work = tempfile.mkdtemp(prefix="snapshot-bench-")
                try:
                    r = skiff_round(args.skiff, elf, memory, work) if name == "skiff" else qemu_round(elf, memory, work)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                if r[3] is None or r[3] % EVERY != 0 or r[3] < 5 * EVERY:
                    sys.exit(f"snapshot-bench: {name} restored guest printed count {r[3]}: not a continuation")
                results[name].append(r)
        rows = [("snapshot, running VM (ms)", 0, 1000.0),
                ("snapshot on disk, du (MiB)", 1, 1 / 1048576),
                ("restore: start -> guest output (ms)", 2, 1000.0)]
        for label, i, scale in rows:
            s = summary([r[i] * scale for r in results["skiff"]])
            q = summary([r[i] * scale for r in results["qemu"]])
            cell = lambda t: f"{t[0]:.2f} ({t[1]:.2f}-{t[2]:.2f})"
            ratio = s[0] / q[0] if q[0] else float("nan")
            print(f"{memory:<6}{label:<40}{cell(s):>28}{cell(q):>28}{ratio:>12.2f}")


if __name__ == "__main__":
    main()
