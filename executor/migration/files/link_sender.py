"""The sending end of the pre-check's link probe (precheck.measure_link), run by path inside the source
host: `python link_sender.py ADDRESS PORT SECONDS` connects (retrying for 5 s while the receiver is not
listening yet), sends for SECONDS, then half-closes and waits for the receiver to close."""

import socket
import sys
import time


def main(address: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + 5.0
    while True:
        try:
            conn = socket.create_connection((address, port), timeout=5.0)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    buf, end = bytes(1 << 20), time.monotonic() + seconds
    while time.monotonic() < end:
        conn.sendall(buf)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
