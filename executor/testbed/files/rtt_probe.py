"""The round trip to a TCP port, run by path inside a testbed host (Testbed.measure_rtt_ms):
`python rtt_probe.py ADDRESS PORT SAMPLES` prints the fastest of SAMPLES connection handshakes (a SYN
and its SYN-ACK), in ms."""

import socket
import sys
import time


def main(address: str, port: int, samples: int) -> None:
    best = 1e9
    for _ in range(samples):
        t = time.perf_counter()
        s = socket.create_connection((address, port), 2)
        best = min(best, time.perf_counter() - t)
        s.close()
    print(best * 1000)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
