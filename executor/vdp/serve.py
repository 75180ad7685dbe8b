"""The switch emulator on a real port: the socket loop that runs `Bridge` (bridge.py) on a port's ECP
and LLDP sockets, and the command line that starts it, `python -m pausecast.executor.vdp.bridge`.

`switch_argv` is that command for a scenario's [switch], for the testbed to start inside a namespace.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

from ...models.errors import ScenarioError
from ...models.files import scenario_from_dict
from ...models.scenario import SwitchSpec
from ...models.units import ms_to_s, s_to_ms
from . import bridge as protocol
from .bridge import LLDP_INTERVAL_S, MIN_GAP_S, Bridge
from .served import EMULATED_FIELDS
from .wire import (
    ETH_P_ECP,
    ETH_P_LLDP,
    NEAREST_CUSTOMER_BRIDGE,
    PACKET_OUTGOING,
    EvbTlv,
    WireError,
    mac_from_bytes,
    mac_to_bytes,
)

# linux/if_packet.h; Python does not export them
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0


def open_port(iface: str, ethertype: int) -> socket.socket:
    """A raw socket on `iface` for one ethertype, joined to the group address (a real NIC filters it)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    sock.bind((iface, ethertype))
    ifindex = socket.if_nametoindex(iface)
    mreq = struct.pack("iHH8s", ifindex, PACKET_MR_MULTICAST, 6, mac_to_bytes(NEAREST_CUSTOMER_BRIDGE))
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    sock.setblocking(False)
    return sock


def port_mac(sock: socket.socket) -> str:
    return mac_from_bytes(sock.getsockname()[4])


def serve(ecp: socket.socket, lldp: socket.socket, bridge: Bridge, log: TextIO,
          stop: Callable[[], bool]) -> None:
    """Runs the bridge on the port's ECP and LLDP sockets until `stop()`; log records get a wall-clock
    time `t`. Frames go out through the ECP socket (its binding only filters what comes in)."""
    epoch_offset_s = time.time() - time.monotonic()
    handlers = {ecp: bridge.receive, lldp: bridge.receive_lldp}

    def flush() -> None:
        for frame in bridge.outbox:
            ecp.send(frame)
        bridge.outbox.clear()
        for record in bridge.records:
            log.write(json.dumps({"t": round(record["mono_s"] + epoch_offset_s, 6), **record}) + "\n")
        bridge.records.clear()
        log.flush()

    bridge.start(time.monotonic())
    flush()
    while not stop():
        deadline = bridge.next_deadline_s()
        wait_s = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
        readable, _, _ = select.select(list(handlers), [], [], wait_s)
        for sock in readable:
            while True:
                try:
                    raw, addr = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] != PACKET_OUTGOING:
                    handlers[sock](raw, time.monotonic())
                    flush()  # the ack first: lldpad's station resends after 2.56 ms
        bridge.advance(time.monotonic())
        flush()
    bridge.records.append({"mono_s": round(time.monotonic(), 6), "event": "stop"})
    flush()


def switch_argv(iface: str, spec: SwitchSpec, log_path: Path, seed: int = 0) -> list[str]:
    """The command that runs the emulator for a scenario's [switch] (to start inside a namespace)."""
    return [sys.executable, "-m", "pausecast.executor.vdp.bridge", "--iface", iface, "--log", str(log_path),
            "--seed", str(seed), *spec_argv(spec)]


def spec_argv(spec: SwitchSpec) -> list[str]:
    """A [switch]'s emulated fields as an emulator's options (add_spec_arguments reads them)."""
    return [arg for name in EMULATED_FIELDS
            for arg in ("--" + name.replace("_", "-"), str(getattr(spec, name)))]


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """An emulator's options for the [switch] it plays, defaulting to the scenario's defaults."""
    defaults = SwitchSpec()
    for name in EMULATED_FIELDS:
        parser.add_argument("--" + name.replace("_", "-"), default=getattr(defaults, name),
                            type=type(getattr(defaults, name)), help=f"[switch] {name}")


def spec_from_arguments(args: argparse.Namespace) -> SwitchSpec:
    """The [switch] the options give, checked as a scenario's (ScenarioError names a bad one)."""
    return scenario_from_dict({"switch": {name: getattr(args, name) for name in EMULATED_FIELDS}}).switch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pausecast.executor.vdp.bridge",
                                     description=protocol.__doc__.split("\n\n")[0])
    parser.add_argument("--iface", required=True, help="the switch's port (run inside its namespace)")
    parser.add_argument("--log", required=True, type=Path, help="JSON-lines log of requests and responses")
    parser.add_argument("--seed", type=int, default=0, help="seeds service times, background load, sequence")
    add_spec_arguments(parser)
    timers = EvbTlv()
    parser.add_argument("--ecp-retries", type=int, default=timers.retries, help="ECP resends (lldpad: 3)")
    parser.add_argument("--ecp-rte", type=int, default=timers.rte, help="ECP ack timer exponent (lldpad: 8)")
    parser.add_argument("--vdp-rwd", type=int, default=timers.rwd, help="resource wait exponent (lldpad: 20)")
    parser.add_argument("--vdp-rka", type=int, default=timers.rka, help="keep-alive exponent (lldpad: 20)")
    parser.add_argument("--lldp-interval-s", type=float, default=LLDP_INTERVAL_S, help="0: send no LLDP")
    parser.add_argument("--min-gap-ms", type=float, default=s_to_ms(MIN_GAP_S),
                        help="least time between two VDP replies (lldpad's station needs 2 ms)")
    args = parser.parse_args(argv)
    try:
        spec = spec_from_arguments(args)
        evb = EvbTlv(retries=args.ecp_retries, rte=args.ecp_rte, rwd=args.vdp_rwd, rka=args.vdp_rka)
        evb.encode()
    except (ScenarioError, WireError) as exc:
        print(f"vdp_switch: {exc}", file=sys.stderr)
        return 2
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    with open_port(args.iface, ETH_P_ECP) as ecp, open_port(args.iface, ETH_P_LLDP) as lldp, \
            args.log.open("a") as log:
        bridge = Bridge(port_mac(ecp), spec, np.random.default_rng(args.seed), evb, args.lldp_interval_s,
                        ms_to_s(args.min_gap_ms))
        serve(ecp, lldp, bridge, log, lambda: bool(stopping))
    return 0

