#!/bin/bash
# Boot every Skiff test guest under QEMU microvm and check its output, exit
# status and (for blk) the disk images on the host.  Needs qemu-system-x86_64,
# qemu-img, python3; the net case also needs root (ip netns + TAP) and is
# skipped otherwise.  Usage: firmware/qemu-selftest.sh   (ACCEL=tcg to force TCG)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
run=$root/scripts/run-firmware-qemu.sh
"$root/scripts/build-firmware.sh" || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${ns:-}" ] && ip netns del "$ns" 2>/dev/null' EXIT
failed=0
ok() { echo "selftest: PASS $*"; }
bad() { echo "selftest: FAIL $*"; failed=1; }

# expect NAME OUTPUT-FILE RC REGEX...: rc 0 and every regex matches a line.
expect() {
	local name=$1 out=$2 rc=$3
	shift 3
	[ "$rc" = 0 ] || { bad "$name: exit status $rc"; head -40 "$out" | sed 's/^/  | /'; return; }
	for re in "$@"; do
		grep -Eq -- "$re" "$out" || { bad "$name: no line matching /$re/"; head -40 "$out" | sed 's/^/  | /'; return; }
	done
	ok "$name"
}

timeout 60 "$run" hello >"$tmp/hello" 2>&1
expect hello "$tmp/hello" $? '^Hello from Skiff firmware$'
[ "$(cat "$tmp/hello")" = "Hello from Skiff firmware" ] || bad "hello: output is not exactly one line"

# echo: lines typed on the serial port come back upper-cased; "q" powers off.
# The pauses let the guest print its ready line before input arrives.
(sleep 3; printf 'hello Echo\r\n'; sleep 1; printf 'q\n') | timeout 60 "$run" echo >"$tmp/echo" 2>&1
expect echo "$tmp/echo" $? '^echo: ready$' '^echo: HELLO ECHO$' '^echo: bye$'

timeout 60 "$run" count -append "count.every=1000 count.limit=5" >"$tmp/count" 2>&1
expect count "$tmp/count" $? '^count: start every=1000 limit=5 counter=0x200000$' '^count 1000$' '^count 5000$' '^count: done$'

# count across a QEMU migration to a file: stop, save, quit; restore, continue.
# The two outputs joined must be one unbroken sequence (a line may be split).
python3 - "$run" "$tmp" <<'PY' && ok "count across QEMU migration" || bad "count across QEMU migration"
import os, socket, subprocess, sys, time
run, tmp = sys.argv[1], sys.argv[2]
args = ["-append", "count.every=20000000 count.limit=60"]
def monitor(path):
    for _ in range(100):
        try:
            s = socket.socket(socket.AF_UNIX); s.connect(path); return s
        except OSError:
            time.sleep(0.05)
    raise SystemExit("no monitor socket")
def cmd(s, c, wait=0.3):
    s.send((c + "\n").encode()); time.sleep(wait)
mig = os.path.join(tmp, "count.mig")
out1, out2 = os.path.join(tmp, "count1"), os.path.join(tmp, "count2")
with open(out1, "wb") as f:
    p = subprocess.Popen([run, "count", "-monitor", f"unix:{tmp}/mon1,server,nowait"] + args, stdout=f, stderr=subprocess.STDOUT)
s = monitor(f"{tmp}/mon1"); time.sleep(0.7)
cmd(s, "stop"); cmd(s, f'migrate "exec:cat > {mig}"', 1.5); cmd(s, "quit")
p.wait(timeout=20)
with open(out2, "wb") as f:
    p = subprocess.Popen([run, "count", "-monitor", f"unix:{tmp}/mon2,server,nowait", "-incoming", f"exec:cat {mig}"] + args, stdout=f, stderr=subprocess.STDOUT)
s = monitor(f"{tmp}/mon2"); time.sleep(0.5)
cmd(s, "cont")
rc = p.wait(timeout=60)
a, b = open(out1).read(), open(out2).read()
lines = (a + b).splitlines()
nums = [int(l.split()[1]) for l in lines if l.startswith("count ") and l.split()[1].isdigit()]
want = [20000000 * i for i in range(1, 61)]
print(f"  source printed {a.count(chr(10))} lines, restored VM {b.count(chr(10))}, exit {rc}")
if rc != 0 or nums != want or not lines or lines[-1] != "count: done" or "count " not in b:
    sys.exit(f"sequence broken: {nums[:3]}...{nums[-3:]} ({len(nums)} numbers)")
PY

# blk: raw disk + qcow2 overlay on a backing file + read-only raw disk.
qemu-img create -q -f raw "$tmp/raw.img" 16M
qemu-img create -q -f qcow2 "$tmp/base.qcow2" 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 1M' "$tmp/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b "$tmp/base.qcow2" -F qcow2 "$tmp/top.qcow2"
qemu-img create -q -f raw "$tmp/ro.img" 1M
mmio="virtio_mmio.device=512@0xfeb02e00:47 virtio_mmio.device=512@0xfeb02c00:46 virtio_mmio.device=512@0xfeb02a00:45"
timeout 120 "$run" blk \
	-drive id=d0,file="$tmp/raw.img",format=raw,if=none,discard=unmap -device virtio-blk-device,drive=d0,serial=RAW0 \
	-drive id=d1,file="$tmp/top.qcow2",format=qcow2,if=none,discard=unmap -device virtio-blk-device,drive=d1,serial=QCOW1 \
	-drive id=d2,file="$tmp/ro.img",format=raw,if=none,readonly=on -device virtio-blk-device,drive=d2 \
	-append "$mmio" >"$tmp/blk" 2>&1
expect blk "$tmp/blk" $? '^blk: PASS interrupt: irq 47 -> vector 0x40 delivered' '^blk: PASS get_id "RAW0"$' '^blk: PASS get_id "QCOW1"$' \
	'^blk: PASS write to read-only disk rejected' '^blk: PASS all [0-9]+ checks on 3 device\(s\)$' '^blk: done$'
qemu-img check -q "$tmp/top.qcow2" && ok "blk: qemu-img check" || bad "blk: qemu-img check"
qemu-img convert -O raw "$tmp/top.qcow2" "$tmp/top.raw"
python3 - "$tmp/raw.img" "$tmp/top.raw" <<'PY' && ok "blk: on-disk pattern" || bad "blk: on-disk pattern"
import struct, sys
M = (1 << 64) - 1
def pat(s, i): return ((s * 0x9E3779B97F4A7C15) & M) ^ (((i + 1) * 0xC2B2AE3D27D4EB4F) & M)
for path in sys.argv[1:]:
    d = open(path, 'rb').read()
    n = len(d) // 512
    for s in list(range(0, 256)) + list(range(1024, 3072)) + list(range(n - 8, n)):
        if struct.unpack_from('<64Q', d, s * 512) != tuple(pat(s, i) for i in range(64)):
            sys.exit(f"{path}: sector {s} lacks the pattern")
    if d[384 * 512:448 * 512] != bytes(64 * 512):
        sys.exit(f"{path}: write-zeroes region not zero")
    if path.endswith('top.raw') and d[448 * 512:1024 * 512] != b'\x11' * (576 * 512):
        sys.exit(f"{path}: backing file data not visible")
PY
timeout 60 "$run" blk -drive id=d0,file="$tmp/raw.img",format=raw,if=none -device virtio-blk-device,drive=d0 \
	-append "virtio_mmio.device=512@0xfeb02e00:47 blk.mode=check" >"$tmp/blkcheck" 2>&1
expect "blk check mode" "$tmp/blkcheck" $? '^blk: PASS check pattern in 256 sectors at 0$'

timeout 60 "$run" blk -drive id=d0,file="$tmp/raw.img",format=raw,if=none -device virtio-blk-device,drive=d0 \
	-append "virtio_mmio.device=512@0xfeb02e00:47 blk.bench=rand blk.secs=1 ${TSC_KHZ:+tsc_khz=$TSC_KHZ}" >"$tmp/blkbench" 2>&1
expect "blk bench" "$tmp/blkbench" $? '^blk: bench result mode=rand .* errors=0 MiB/s=[0-9.]+ IOPS=[0-9]+ '

qemu-img create -q -f raw "$tmp/h.img" 16M
timeout 120 "$run" hostile -drive id=d0,file="$tmp/h.img",format=raw,if=none -device virtio-blk-device,drive=d0 \
	-append "virtio_mmio.device=512@0xfeb02e00:47" >"$tmp/hostile" 2>/dev/null
expect hostile "$tmp/hostile" $? '^hostile: case descriptor-loop: ' '^hostile: PASS valid request after [0-9]+ hostile cases'

timeout 60 "$run" probe >"$tmp/probe" 2>&1
expect probe "$tmp/probe" $? '^probe: done$'

if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
	ns=fwselftest$$
	ip netns add "$ns" && ip netns exec "$ns" ip tuntap add dev fwtap0 mode tap &&
		ip netns exec "$ns" ip addr add 10.0.2.1/24 dev fwtap0 && ip netns exec "$ns" ip link set fwtap0 up
	timeout 120 ip netns exec "$ns" "$run" net -netdev tap,id=n0,ifname=fwtap0,script=no,downscript=no \
		-device virtio-net-device,netdev=n0 \
		-append "virtio_mmio.device=512@0xfeb02e00:47 net.ip=10.0.2.15 net.peer=10.0.2.1" >"$tmp/net" 2>&1
	expect net "$tmp/net" $? '^net: PASS arp 10.0.2.1 is at ' '^net: PASS interrupt: irq 47 -> vector 0x40 delivered' '^net: PASS all 5 checks$'
else
	echo "selftest: SKIP net (needs root for ip netns and a TAP)"
fi

[ "$failed" = 0 ] && echo "selftest: all passed" || echo "selftest: FAILED"
exit "$failed"
