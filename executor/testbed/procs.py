"""Processes as the testbed sees them: /proc reads (start times, command lines, namespaces), stopping
them, and the one way it runs a command to completion.

A pid alone can name a different process once the first has gone, so what the testbed kills it names by
(pid, start time) where it recorded both, and checks `alive` with that start time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


class TestbedError(RuntimeError):
    __test__ = False


def run(argv: list[str], *, check: bool = True, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    """Runs `argv` to completion with no stdin and its output captured as text. With `check`, a non-zero
    exit raises TestbedError naming the command, its exit code and the end of its stderr."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return r


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/<pid>/stat field 22); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def cmdline(pid: int) -> str:
    """The command line, arguments joined by spaces; "" for a kernel thread or a process gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def argv_of(pid: int) -> list[str]:
    """The command line as its arguments; [] for a kernel thread or a process gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]] if raw else []


def inode(path: str | Path) -> int | None:
    """The inode of a namespace file (/proc/<pid>/ns/*, /run/netns/*): equal inodes, same namespace."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def ns_inode(pid: int | str, ns: str) -> int | None:
    """The inode of process `pid`'s namespace `ns` (net, mnt, ...); pid may be "self"."""
    return inode(f"/proc/{pid}/ns/{ns}")


def alive(pid: int, start: int | None) -> bool:
    """Whether `pid` runs (a zombie does not) and, given its recorded start time, is still that process."""
    st = start_time(pid)
    if st is None:
        return False
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except OSError:
        return False
    return start is None or st == start


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]



def pids_in_netns(netns_path: Path) -> list[int]:
    """Every process but this one inside the network namespace that `netns_path` names."""
    target = inode(netns_path)
    if target is None:
        return []
    me = os.getpid()
    return [pid for pid in all_pids() if pid != me and ns_inode(pid, "net") == target]


def reap(pid: int) -> None:
    """Collects `pid`'s exit status if it is this process's child and has exited."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """A child this process started: TERM, then KILL if it is not gone within `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_pid(pid: int, timeout_s: float = 5.0) -> None:
    """A process this one did not start (a crash's leftover): by pid, TERM then KILL, each waited for up
    to `timeout_s`. A zombie counts as gone: it holds no namespace, and its parent reaps it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive(pid, None):
                return
            time.sleep(0.05)
