#!/usr/bin/env python3
"""Writes the hand-made seeds of Fuzz/corpus (the rest come from real files, see
docs/fuzzing.md): virtqueue requests, API requests, small ELF kernels. Run from the
repository root: python3 Fuzz/make-seeds.py"""
import struct, os

def put(target, name, data):
    os.makedirs(f"Fuzz/corpus/{target}", exist_ok=True)
    with open(f"Fuzz/corpus/{target}/{name}", "wb") as f:
        f.write(data)

# --- virtqueue: [flags][size][guest RAM from 0]; desc 0x0, avail 0x800, used 0xa00, data from 0x1000;
# trailing zeroes are left off (the harness zeroes RAM).
def ram(descs, heads, extra, flags, size_log2=4, indirect=None):
    mem = bytearray(0x2000)
    for i, (addr, length, fl, nxt) in enumerate(descs):
        struct.pack_into("<QIHH", mem, 16 * i, addr, length, fl, nxt)
    struct.pack_into("<HH", mem, 0x800, 0, len(heads))
    for i, h in enumerate(heads):
        struct.pack_into("<H", mem, 0x804 + 2 * i, h)
    if indirect:
        at, table = indirect
        for i, (addr, length, fl, nxt) in enumerate(table):
            struct.pack_into("<QIHH", mem, at + 16 * i, addr, length, fl, nxt)
    for at, data in extra:
        mem[at:at + len(data)] = data
    return bytes([flags, size_log2]) + bytes(mem).rstrip(b"\0")

NEXT, WRITE, INDIRECT = 1, 2, 4
def blk(kind, sector, data_len, write_data=False, flags=0):
    hdr = struct.pack("<IIQ", kind, 0, sector)
    descs = [(0x1000, 16, NEXT, 1)]
    if data_len:
        descs.append((0x1100, data_len, NEXT | (0 if write_data else WRITE), 2))
    descs.append((0x1010, 1, WRITE, 0))
    return ram(descs, [0], [(0x1000, hdr), (0x1100, b"\xab" * data_len)], flags)

put("virtqueue", "blk-read", blk(0, 1, 512))
put("virtqueue", "blk-write", blk(1, 2, 1024, write_data=True))
put("virtqueue", "blk-write-through", blk(1, 0, 512, write_data=True, flags=4))
put("virtqueue", "blk-flush", blk(4, 0, 0))
put("virtqueue", "blk-getid", blk(8, 0, 20))
put("virtqueue", "blk-discard", ram([(0x1000, 16, NEXT, 1), (0x1100, 16, NEXT, 2), (0x1010, 1, WRITE, 0)], [0],
                                    [(0x1000, struct.pack("<IIQ", 11, 0, 0)), (0x1100, struct.pack("<QII", 8, 8, 0))], 0))
put("virtqueue", "blk-write-zeroes", ram([(0x1000, 16, NEXT, 1), (0x1100, 16, NEXT, 2), (0x1010, 1, WRITE, 0)], [0],
                                         [(0x1000, struct.pack("<IIQ", 13, 0, 0)), (0x1100, struct.pack("<QII", 0, 16, 1))], 0))
put("virtqueue", "blk-indirect", ram([(0x1800, 48, INDIRECT, 0)], [0], [(0x1000, struct.pack("<IIQ", 0, 0, 3))], 1,
                                     indirect=(0x1800, [(0x1000, 16, NEXT, 1), (0x1100, 512, NEXT | WRITE, 2), (0x1010, 1, WRITE, 0)])))
put("virtqueue", "blk-two-requests-event-idx", ram([(0x1000, 16, NEXT, 1), (0x1010, 1, WRITE, 0), (0x1020, 16, NEXT, 3), (0x1030, 1, WRITE, 0)],
                                                  [0, 2], [(0x1000, struct.pack("<IIQ", 4, 0, 0)), (0x1020, struct.pack("<IIQ", 8, 0, 0))], 2))
vnet = bytes(12)
frame = vnet + bytes.fromhex("ffffffffffff525400123456 0806".replace(" ", "")) + bytes(28)
put("virtqueue", "net-tx", ram([(0x1000, len(frame), 0, 0)], [0], [(0x1000, frame)], 0x80))
put("virtqueue", "net-tx-split", ram([(0x1000, 12, NEXT, 1), (0x100c, len(frame) - 12, 0, 0)], [0], [(0x1000, frame)], 0x81))

# --- api: [split][HTTP bytes]
def req(method, path, body=None, extra=""):
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n" + (body or "")).encode()

put("api", "ping", b"\x00" + req("GET", "/api/v1/vmm.ping"))
put("api", "info", b"\x05" + req("GET", "/api/v1/vm.info"))
put("api", "counters-pipelined", b"\x00" + req("GET", "/api/v1/vm.counters") + req("GET", "/api/v1/vm.info?x=1"))
put("api", "pause", b"\x00" + req("PUT", "/api/v1/vm.pause"))
put("api", "snapshot", b"\x08" + req("PUT", "/api/v1/vm.snapshot", '{"destination_url":"file:///var/snap"}'))
put("api", "restore", b"\x00" + req("PUT", "/api/v1/vm.restore", '{"source_url":"file:///var/snap"}'))
put("api", "send-migration", b"\x00" + req("PUT", "/api/v1/vm.send-migration", '{"destination_url":"tcp:10.0.0.2:6000"}'))
put("api", "receive-migration", b"\x00" + req("PUT", "/api/v1/vm.receive-migration", '{"receiver_url":"tcp:0.0.0.0:6000"}'))
put("api", "chunked", b"\x00" + b"PUT /api/v1/vm.snapshot HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"10\r\n{\"destination_u\r\n17\r\nrl\":\"file:///tmp/s\"}   \r\n0\r\n\r\n")
put("api", "expect-continue", b"\x00" + req("PUT", "/api/v1/vm.restore", '{"source_url":"file:///s"}', "Expect: 100-continue\r\n"))
put("api", "wrong-method", b"\x00" + req("POST", "/api/v1/vm.pause", "{}"))
put("api", "close", b"\x00" + req("GET", "/api/v1/vm.info", None, "Connection: close\r\n"))

# --- loader: a minimal PVH ELF64 (one PT_LOAD, one PT_NOTE with XEN_ELFNOTE_PHYS32_ENTRY)
def elf64():
    code = b"\xf4" * 16
    note = struct.pack("<III", 4, 8, 18) + b"Xen\0" + struct.pack("<Q", 0x100000)
    phoff, n = 64, 2
    data_off = phoff + 56 * n
    hdr = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    hdr += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x100000, phoff, 0, 0, 64, 56, n, 64, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 7, data_off, 0x100000, 0x100000, len(code), 0x2000, 0x1000)
    pnote = struct.pack("<IIQQQQQQ", 4, 4, data_off + len(code), 0, 0, len(note), len(note), 4)
    return hdr + load + pnote + code + note

def elf32():
    code = b"\xf4" * 16
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", 0x100000)
    phoff, n = 52, 2
    data_off = phoff + 32 * n
    hdr = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    hdr += struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0x100000, phoff, 0, 0, 52, 32, n, 40, 0, 0)
    load = struct.pack("<IIIIIIII", 1, data_off, 0x100000, 0x100000, len(code), 0x2000, 7, 0x1000)
    pnote = struct.pack("<IIIIIIII", 4, data_off + len(code), 0, 0, len(note), len(note), 4, 4)
    return hdr + load + pnote + code + note

put("loader", "pvh64.elf", elf64())
put("loader", "pvh32.elf", elf32())
