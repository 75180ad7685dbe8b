"""The receiving end of the pre-check's link probe (precheck.measure_link), run by path inside the
destination host: `python link_receiver.py ADDRESS PORT TIMEOUT_S` accepts one TCP connection, reads it
to its end and prints {"bytes": payload bytes, "s": seconds from the first byte to the last} as JSON."""

import json
import socket
import sys
import time


def main(address: str, port: int, timeout_s: float) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((address, port))
    srv.listen(1)
    srv.settimeout(timeout_s)
    conn, _ = srv.accept()
    conn.settimeout(timeout_s)
    n, t0, t1 = 0, None, None
    while data := conn.recv(1 << 20):
        t1 = time.monotonic()
        t0 = t0 or t1
        n += len(data)
    conn.close()
    print(json.dumps({"bytes": n, "s": (t1 - t0) if n else 0.0}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
