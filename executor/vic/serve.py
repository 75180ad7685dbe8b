"""The VIC emulator as a process: `Vic` (vic.py) on a UNIX socket that the preloaded shim in a
libvirtd (executor/testbed/files/vic_shim.c) asks, one line a connection:

    set <request> <profile> <instance> <host> <mac>   ->  ok <req>
    get                                               ->  none | port <request> <response> <profile>
                                                          <instance> <host>

("-" for what libvirt did not send; UUIDs and the MAC in hex). Every request, poll and answer is logged
as a JSON line with its wall-clock time `t` and this machine's monotonic `mono_s`:

    python -m pausecast.executor.vic.serve --socket vic.sock --log vic.jsonl --service-time-ms 300
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

from ...models.errors import ScenarioError
from ...models.scenario import SwitchSpec
from ..vdp.serve import add_spec_arguments, spec_argv, spec_from_arguments
from .vic import PortRequest, Vic

_LINE_BYTES = 512
# a shim that connected and says nothing is given up on after this, so one stuck libvirtd thread
# cannot stall the other host's answers
_CLIENT_TIMEOUT_S = 1.0


def _field(text: str) -> str:
    return "" if text == "-" else text


def answer(vic: Vic, line: str, now_s: float) -> str:
    """The reply to one of the shim's lines."""
    words = line.split()
    if words[:1] == ["set"] and len(words) == 6:
        port = PortRequest(int(words[1]), *(_field(w) for w in words[2:]))
        return f"ok {vic.request(port, now_s)}\n"
    if words == ["get"]:
        status = vic.status(now_s)
        if status is None:
            return "none\n"
        p = status.port
        return (f"port {p.request} {status.response} {p.profile or '-'} {p.instance_uuid or '-'} "
                f"{p.host_uuid or '-'}\n")
    return "error\n"


def serve(listener: socket.socket, vic: Vic, log: TextIO, stop: Callable[[], bool]) -> None:
    epoch_offset_s = time.time() - time.monotonic()

    def flush() -> None:
        for record in vic.records:
            log.write(json.dumps({"t": round(record["mono_s"] + epoch_offset_s, 6), **record}) + "\n")
        vic.records.clear()
        log.flush()

    vic.start(time.monotonic())
    flush()
    while not stop():
        deadline = vic.next_deadline_s()
        wait_s = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
        readable, _, _ = select.select([listener], [], [], wait_s)
        if readable:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(_CLIENT_TIMEOUT_S)
                try:
                    line = conn.recv(_LINE_BYTES).decode(errors="replace")
                    reply = answer(vic, line, time.monotonic()) if line.endswith("\n") else "error\n"
                    conn.sendall(reply.encode())
                except (OSError, ValueError) as exc:
                    vic.records.append({"mono_s": round(time.monotonic(), 6), "event": "bad-line",
                                        "error": str(exc)})
        vic.advance(time.monotonic())
        flush()
    vic.records.append({"mono_s": round(time.monotonic(), 6), "event": "stop"})
    flush()


def vic_argv(socket_path: Path, spec: SwitchSpec, log_path: Path, seed: int = 0) -> list[str]:
    """The command that runs the VIC emulator for a scenario's [switch]."""
    return [sys.executable, "-m", "pausecast.executor.vic.serve", "--socket", str(socket_path),
            "--log", str(log_path), "--seed", str(seed), *spec_argv(spec)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pausecast.executor.vic.serve",
                                     description="An emulated Cisco VIC's 802.1Qbh port profile "
                                                 "(for the preloaded shim in libvirtd)")
    parser.add_argument("--socket", required=True, type=Path, help="the UNIX socket the shim asks")
    parser.add_argument("--log", required=True, type=Path, help="JSON-lines log of requests, polls, answers")
    parser.add_argument("--seed", type=int, default=0, help="seeds service times and background load")
    add_spec_arguments(parser)
    args = parser.parse_args(argv)
    try:
        spec = spec_from_arguments(args)
    except ScenarioError as exc:
        print(f"vic: {exc}", file=sys.stderr)
        return 2
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    args.socket.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener, args.log.open("a") as log:
        listener.bind(str(args.socket))
        listener.listen(16)
        serve(listener, Vic(spec, np.random.default_rng(args.seed)), log, lambda: bool(stopping))
    args.socket.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
