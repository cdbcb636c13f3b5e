#!/usr/bin/env python3
"""A recording TCP relay for the migration seeds (Fuzz/corpus/migration).

    python3 Fuzz/record-migration.py LISTEN_PORT TARGET_PORT OUTPUT

Listens on 127.0.0.1:LISTEN_PORT for one connection (the source's `skiff migrate
... tcp:127.0.0.1:LISTEN_PORT`), connects it to the destination waiting on
127.0.0.1:TARGET_PORT (`skiff run --incoming`), forwards both ways until both
sides close, and writes what the source sent (the stream a destination decodes,
which is what fuzz-migration reads) to OUTPUT, and the destination's answers
(accepted, diskPlan, ready, running) to OUTPUT.reply. Use --insecure-migration at both
ends: an encrypted stream would only fuzz the channel's authentication.
"""
import socket
import sys
import threading


def main() -> None:
    listen_port, target_port, output = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(1)
    print(f"record-migration: listening on {listen_port}", flush=True)
    source, _ = server.accept()
    destination = socket.create_connection(("127.0.0.1", target_port))
    recorded, replies = bytearray(), bytearray()

    def pump(src: socket.socket, dst: socket.socket, keep: bytearray) -> None:
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            keep.extend(data)
            dst.sendall(data)

    back = threading.Thread(target=pump, args=(destination, source, replies))
    back.start()
    pump(source, destination, recorded)
    back.join()
    with open(output, "wb") as f:
        f.write(recorded)
    with open(output + ".reply", "wb") as f:
        f.write(replies)
    print(f"record-migration: {len(recorded)} bytes from the source in {output}", flush=True)


if __name__ == "__main__":
    main()
