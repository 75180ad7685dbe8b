"""Two libvirt hosts as an operator runs them, and the operator's own domain on them, for
tests/test_operator_hosts.py.

tests/files/operator-hosts.sh sets the hosts up with nothing but `ip netns`, `unshare`, `mount --bind`
and `libvirtd --daemon --listen`; this module wraps it for the tests and looks at what it built from
the outside: libvirt's own view of each host (virsh, virt-admin, libvirt-python through the daemons'
UNIX sockets) and /proc. It deliberately knows nothing of pausecast.executor.testbed.hosts, so that the
real-host commands are tested against hosts pausecast did not configure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_DIR = Path("/var/lib/pausecast-operator-hosts")
SCRIPT = Path(__file__).resolve().parent / "files" / "operator-hosts.sh"
ADDRESSES = {"op-a": "10.214.0.1", "op-b": "10.214.0.2"}


class HostsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    state: Path

    @property
    def uri(self) -> str:
        """How this machine's root namespace reaches the daemon: its UNIX socket, bind-mounted out."""
        return f"qemu+unix:///system?socket={self.state}/run/libvirt-sock"

    @property
    def admin_uri(self) -> str:
        return f"libvirtd:///system?socket={self.state}/run/libvirt-admin-sock"

    @property
    def tcp_uri(self) -> str:
        """How the other host's daemon reaches this one (peer-to-peer), over the veth."""
        return f"qemu+tcp://{self.address}/system"

    @property
    def migrate_uri(self) -> str:
        return f"tcp://{self.address}"

    @property
    def migration_log(self) -> Path:
        return self.state / "log" / "migration.log"

    @property
    def config(self) -> Path:
        return self.state / "etc" / "libvirtd.conf"


def _starttime(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def _running(pid: int, start: int | None) -> bool:
    """The same process (not a reused pid), and not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0] != "Z" and (start is None or int(fields[19]) == start)


def _cmdline(pid: int | str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _netns(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


class OperatorHosts:
    """op-a and op-b. up() and down() run the operator's script; down() is safe to call at any time,
    also after a crash of an earlier run."""

    def __init__(self, state_dir: Path = STATE_DIR) -> None:
        self.state_dir = Path(state_dir)
        self.hosts = {name: Host(name, address, self.state_dir / name) for name, address in ADDRESSES.items()}
        self._conns: dict[str, Any] = {}
        # every libvirtd and QEMU seen running on the hosts, (pid, start time), for leftovers()
        self.seen: dict[int, tuple[int | None, str]] = {}
        self._netns_inodes: set[int] = set()

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def _script(self, action: str) -> None:
        r = subprocess.run(["sh", str(SCRIPT), action, str(self.state_dir)], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise HostsError(f"operator-hosts.sh {action} failed ({r.returncode}): {r.stderr.strip()}")

    def up(self) -> None:
        try:
            self._script("up")
            for host in self.hosts.values():
                pid = int((host.state / "run" / "libvirtd.pid").read_text())
                self._note(pid, f"libvirtd on {host.name}")
                if (ino := _netns(pid)) is not None:
                    self._netns_inodes.add(ino)
                if self.connect(host.name).getHostname() != host.name:
                    raise HostsError(f"the daemon behind {host.uri} is not {host.name}")
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._conns.clear()
        self._script("down")

    def _note(self, pid: int, what: str) -> None:
        self.seen.setdefault(pid, (_starttime(pid), what))

    # ------------------------------------------------------------------------------ libvirt's view
    def connect(self, name: str) -> Any:
        import libvirt

        conn = self._conns.get(name)
        if conn is None or not conn.isAlive():
            conn = self._conns[name] = libvirt.open(self[name].uri)
        return conn

    def virsh(self, name: str, *args: str) -> str:
        r = subprocess.run(["virsh", "-c", self[name].uri, *args], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise HostsError(f"virsh {' '.join(args)} on {name}: {r.stderr.strip()}")
        return r.stdout

    def virt_admin(self, name: str, *args: str) -> str:
        r = subprocess.run(["virt-admin", "-c", self[name].admin_uri, *args], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise HostsError(f"virt-admin {' '.join(args)} on {name}: {r.stderr.strip()}")
        return r.stdout

    def domains(self, name: str) -> dict[str, str]:
        """`virsh list --all` on one host: domain name -> state ("running", "shut off", ...)."""
        out = {}
        for line in self.virsh(name, "list", "--all").splitlines()[2:]:
            parts = line.split(None, 2)
            if len(parts) == 3:
                out[parts[1]] = parts[2].strip()
        return out

    def where(self, domain: str) -> dict[str, str]:
        """Each host that has `domain` (running or only defined) -> its state; notes a running QEMU."""
        found = {}
        for name, host in self.hosts.items():
            state = self.domains(name).get(domain)
            if state is None:
                continue
            found[name] = state
            pid_file = host.state / "run" / "qemu" / f"{domain}.pid"
            with contextlib.suppress(OSError, ValueError):
                self._note(int(pid_file.read_text()), f"QEMU of {domain} on {name}")
        return found

    def lookup(self, name: str, domain: str) -> Any:
        return next(d for d in self.connect(name).listAllDomains() if d.name() == domain)

    # --------------------------------------------------------------------------- the operator's VM
    def define_and_start(self, name: str, xml_path: Path, domain: str, serial_log: Path,
                         wait_s: float = 30.0) -> None:
        """`virsh define` and `virsh start` on host `name`, then wait until the test guest reports on
        its serial port that it has written pages since it filled its memory."""
        serial_log.unlink(missing_ok=True)
        self.virsh(name, "define", str(xml_path))
        self.virsh(name, "start", domain)
        deadline = time.monotonic() + wait_s
        writing = re.compile(rb"\npcd ms=\d+ pages=[1-9]")
        while not writing.search(serial_log.read_bytes() if serial_log.exists() else b""):
            if self.domains(name).get(domain) != "running":
                raise HostsError(f"{domain} stopped on {name} before it started writing; see {serial_log}")
            if time.monotonic() > deadline:
                raise HostsError(f"{domain} did not start writing within {wait_s:.0f} s; see {serial_log}")
            time.sleep(0.05)
        self.where(domain)

    # ---------------------------------------------------------------------------- what is left over
    def leftovers(self) -> dict[str, list[str]]:
        """What of the hosts is still on this machine, looked for independently of the script: each
        list is empty after down()."""
        needle = f"{self.state_dir}/"
        me = os.getpid()
        named, in_netns, mounting = [], [], []
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            if pid == me:
                continue
            cmd = _cmdline(pid)
            if needle in cmd:
                named.append(f"{pid} {cmd[:160]}")
            if self._netns_inodes and _netns(pid) in self._netns_inodes:
                in_netns.append(f"{pid} {cmd[:160]}")
            with contextlib.suppress(OSError):
                if f" {needle}" in Path(f"/proc/{pid}/mountinfo").read_text():
                    mounting.append(f"{pid} {cmd[:160]}")
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        return {
            "processes naming the state dir": named,
            "processes in the hosts' network namespaces": in_netns,
            "processes holding the hosts' mounts": mounting,
            "libvirtd and QEMU seen running": [f"{pid} ({what})" for pid, (start, what) in self.seen.items()
                                               if _running(pid, start)],
            "named network namespaces": [n for n in netns if n in self.hosts],
            "mounts in this namespace": [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                                         if str(self.state_dir) in ln],
            "links in this namespace": [f"{n}0" for n in self.hosts if Path(f"/sys/class/net/{n}0").exists()],
            "state dir": [str(self.state_dir)] if self.state_dir.exists() else [],
        }


def tools_missing() -> list[str]:
    return [t for t in ("ip", "unshare", "libvirtd", "virsh", "virt-admin", "pgrep", "ps")
            if shutil.which(t) is None]
