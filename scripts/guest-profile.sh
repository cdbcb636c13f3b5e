#!/usr/bin/env bash
# Sample a running QEMU guest's instruction pointer through the QEMU monitor
# and attribute the samples to kernel functions with System.map.
#
# Usage:
#   scripts/boot-linux-qemu.sh --monitor /tmp/m.sock ... &
#   scripts/guest-profile.sh /tmp/m.sock SYSTEM.MAP [INTERVAL] > profile.txt
# Samples every INTERVAL seconds (default 0.3) with "info registers -a" until
# the socket goes away, then prints: a flat profile (function, samples,
# share), user-mode share, and a timeline (top functions per 5 s window).
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
exec python3 - "$@" <<'PY'
import bisect, collections, re, socket, sys, time

sock_path, map_path = sys.argv[1], sys.argv[2]
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.3

syms = []
for line in open(map_path):
    parts = line.split()
    if len(parts) >= 3 and parts[1] in "tTwW":
        syms.append((int(parts[0], 16), parts[2]))
syms.sort()
addrs = [a for a, _ in syms]

def lookup(rip):
    i = bisect.bisect_right(addrs, rip) - 1
    if i < 0 or rip < 0xffffffff80000000:
        return None
    return syms[i][1]

for _ in range(300):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(sock_path); break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("guest-profile: cannot connect to " + sock_path)
s.settimeout(60)

buf = b""
def read_until_prompt():
    global buf
    while b"(qemu) " not in buf:
        data = s.recv(65536)
        if not data:
            raise EOFError
        buf += data
    out, _, buf = buf.partition(b"(qemu) ")
    return out.decode(errors="replace")

flat = collections.Counter()
timeline = collections.defaultdict(collections.Counter)
total = 0
t0 = time.time()
try:
    read_until_prompt()
    while True:
        s.sendall(b"info registers -a\n")
        out = read_until_prompt()
        now = time.time() - t0
        for m in re.finditer(r"RIP=([0-9a-f]+).*?CPL=(\d)", out, re.S):
            rip, cpl = int(m.group(1), 16), int(m.group(2))
            name = lookup(rip) if cpl == 0 else None
            if name is None:
                name = "[user]" if cpl == 3 else "[cpl%d %x]" % (cpl, rip)
            flat[name] += 1
            timeline[int(now // 5) * 5][name] += 1
            total += 1
        time.sleep(interval)
except (EOFError, OSError, socket.timeout):
    pass

print("samples: %d over %.1f s (interval %.2f s)" % (total, time.time() - t0, interval))
print("\n== flat profile")
for name, n in flat.most_common(60):
    print("%6d %5.1f%%  %s" % (n, 100.0 * n / max(total, 1), name))
print("\n== timeline (top 3 per 5 s)")
for t in sorted(timeline):
    c = timeline[t]
    print("%5ds  " % t + ", ".join("%s %d" % kv for kv in c.most_common(3)))
PY
