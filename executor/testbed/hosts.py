"""A real two-host libvirt testbed on one machine.

Two "hosts", pc-src and pc-dst, each a set of Linux namespaces (UTS + mount + network) kept alive by a
holder process, each with its own libvirtd 9.x, hostname and host UUID (libvirt refuses to migrate to a
host with the same name or UUID). A veth pair joins them (10.213.0.1/30 <-> 10.213.0.2/30), created
directly inside the two namespaces, so several testbeds (different state dirs) can coexist. tc on both
ends shapes the link (link.py). Migration traffic - the peer-to-peer control connection and the QEMU
stream - crosses that veth and nothing else.

How the root namespace (where pausecast runs) reaches the daemons: through their UNIX sockets. Inside
each host, /run/libvirt is a bind mount of <state_dir>/<host>/run, so the socket that libvirtd creates
is also at <state_dir>/<host>/run/libvirt-sock in the root namespace, and
`qemu+unix:///system?socket=<that path>` works from anywhere on the machine. The TCP URIs
(qemu+tcp://10.213.0.x/system) only exist inside the testbed: they are what the source daemon uses to
reach the destination in peer-to-peer mode. No address, route or link is added to the root namespace.

Per host, under <state_dir>/<host>/: etc (-> /etc/libvirt), lib (-> /var/lib/libvirt), log
(-> /var/log/libvirt), cache (-> /var/cache/libvirt), run (-> /run/libvirt), hosts (-> /etc/hosts);
/run itself is a private tmpfs. state.json records the pids (with their start times, so a reused pid is
never killed). down() kills by those pids and also by scanning /proc for processes whose command line
names the testbed or whose mount table holds its bind mounts, so it also cleans up after a crash.

Accelerator: KVM where it is fast enough, otherwise TCG (kvm.py). The daemons' configurations are
filled from files/libvirtd.conf.in and files/qemu.conf.in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..migration.daemon_log import mark_line
from .guest_build import build_guest
from .guest_domain import DirtySpec, domain_xml, guest_faulted, guest_started
from .kvm import QEMU, capabilities_cache_dir, detect_virt_type
from .link import netem_available, shaping_commands
from .package_files import FILES_DIR, filled
from .procs import TestbedError, alive, all_pids, argv_of, cmdline, ns_inode, reap, run, start_time

if TYPE_CHECKING:
    from ...models.scenario import SwitchSpec
    from ..migration.migrate import PortObserver

DEFAULT_STATE_DIR = Path("/var/lib/pausecast-testbed")
MARKER = "pausecast-testbed"
SRC, DST = "pc-src", "pc-dst"
HOSTS = (SRC, DST)
LIBVIRTD_PORT = 16509
_REQUIRED_TOOLS = ("unshare", "nsenter", "ip", "tc", "libvirtd", "mount")


@dataclass(frozen=True)
class TestbedConfig:
    """bandwidth_mbit_s None = unshaped veth; rtt_ms 0 = no added delay. virt_type: auto|kvm|qemu."""

    state_dir: Path = DEFAULT_STATE_DIR
    subnet: str = "10.213.0.0/30"
    bandwidth_mbit_s: float | None = None
    rtt_ms: float = 0.0
    virt_type: str = "auto"
    timeout_s: float = 60.0

    __test__ = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        net = ipaddress.ip_network(self.subnet)
        if net.version != 4 or net.num_addresses < 4:
            raise ValueError("subnet must be an IPv4 network with at least 2 host addresses")
        if self.virt_type not in ("auto", "kvm", "qemu"):
            raise ValueError("virt_type must be auto, kvm or qemu")
        if self.bandwidth_mbit_s is not None and self.bandwidth_mbit_s <= 0:
            raise ValueError("bandwidth_mbit_s must be > 0 or None")
        if self.rtt_ms < 0:
            raise ValueError("rtt_ms must be >= 0")

    @property
    def prefix_len(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    def address(self, host: str) -> str:
        hosts = list(ipaddress.ip_network(self.subnet).hosts())
        return str(hosts[HOSTS.index(host)])


@dataclass(frozen=True)
class HostInfo:
    name: str
    address: str
    uri: str  # reachable from the root namespace (UNIX socket)
    tcp_uri: str  # reachable from the other host only (for peer-to-peer dconnuri)
    migrate_uri: str  # where the QEMU stream goes when this host is the destination
    veth: str
    holder_pid: int
    libvirtd_pid: int
    host_uuid: str


# ------------------------------------------------------------------------------------------ config


# The executor reads each daemon's migration phases (Begin ... Confirm) and QEMU's monitor events, all
# with timestamps, from this debug log; nothing else is logged below warnings.
MIGRATION_LOG = "migration.log"
KEEPALIVE_INTERVAL_S = 1
KEEPALIVE_COUNT = 3
MIGRATION_LOG_FILTERS = ("1:qemu.qemu_migration 1:qemu.qemu_monitor_json 1:conf.virdomainjob "
                         "1:qemu.qemu_process")


def _libvirtd_conf(address: str, host_uuid: str) -> str:
    return filled("libvirtd.conf.in", address=address, tcp_port=LIBVIRTD_PORT, host_uuid=host_uuid,
                  keepalive_interval_s=KEEPALIVE_INTERVAL_S, keepalive_count=KEEPALIVE_COUNT,
                  log_filters=MIGRATION_LOG_FILTERS, migration_log=MIGRATION_LOG)


def _qemu_conf(address: str) -> str:
    # No security driver, cgroups, private /dev or virtlogd: none of them works (or is needed) in a
    # namespace without systemd, and ownership games on shared paths would fight between the hosts.
    return filled("qemu.conf.in", address=address, keepalive_interval_s=KEEPALIVE_INTERVAL_S,
                  keepalive_count=KEEPALIVE_COUNT)


def _nsenter(pid: int) -> list[str]:
    return ["nsenter", "-t", str(pid), "-u", "-m", "-n", "--"]


@dataclass
class _HostState:
    name: str
    address: str
    veth: str
    host_uuid: str
    holder_pid: int = 0
    holder_start: int | None = None
    libvirtd_pid: int = 0
    libvirtd_start: int | None = None
    netns_inode: int | None = None


@dataclass
class _State:
    config: dict[str, Any]
    virt_type: str
    virt_reason: str
    hosts: dict[str, _HostState] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    def to_json(self) -> str:
        d = asdict(self)
        d["config"]["state_dir"] = str(d["config"]["state_dir"])
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> _State:
        d = json.loads(text)
        hosts = {k: _HostState(**v) for k, v in d.pop("hosts").items()}
        return cls(hosts=hosts, **d)


class Testbed:
    """Two libvirt hosts in namespaces on this machine. One testbed per state_dir; needs root.

        tb = Testbed(bandwidth_mbit_s=1000)         # or Testbed(TestbedConfig(...))
        tb.up()
        dom = tb.start_guest("g1", memory_mib=256, dirty=DirtySpec.constant(5000, 128))
        dom.migrateToURI3(tb.host(DST).tcp_uri, params, flags)     # peer-to-peer
        tb.down()
    """

    __test__ = False
    # the port profile on the guest's NIC: the plain testbed's guest has no NIC
    nic_port = "none"
    # whether a run that a port fault (a stuck VSI) stopped is cleared and run again here: only where
    # the testbed has lldpads of its own to restart (the 802.1Qbg testbed's recover_stuck_vsi)
    recovers_port_faults = False

    def __init__(self, config: TestbedConfig | None = None, **overrides: Any) -> None:
        cfg = config or TestbedConfig()
        self.config = replace(cfg, **overrides) if overrides else cfg
        self._conns: dict[str, Any] = {}
        self._children: list[subprocess.Popen[bytes]] = []

    # -------------------------------------------------------------------------------- paths & state
    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _host_dir(self, host: str) -> Path:
        return self.state_dir / host

    def socket_path(self, host: str) -> Path:
        return self._host_dir(host) / "run" / "libvirt-sock"

    def guest_dir(self) -> Path:
        return self.state_dir / "guests"

    def serial_log(self, name: str) -> Path:
        return self.guest_dir() / f"{name}.serial.log"

    def migration_log(self, host: str) -> Path:
        """The host daemon's debug log of migration phases and QEMU events
        (executor/migration/daemon_log.py)."""
        return self._host_dir(host) / "log" / MIGRATION_LOG

    def _load(self) -> _State | None:
        try:
            return _State.from_json(self._state_file.read_text())
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _save(self, st: _State) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(st.to_json())
        os.replace(tmp, self._state_file)

    def host(self, name: str) -> HostInfo:
        st = self._load()
        if st is None or name not in st.hosts:
            raise TestbedError("testbed is not up")
        h = st.hosts[name]
        return HostInfo(name=name, address=h.address,
                        uri=f"qemu+unix:///system?socket={self.socket_path(name)}",
                        tcp_uri=f"qemu+tcp://{h.address}/system", migrate_uri=f"tcp://{h.address}",
                        veth=h.veth, holder_pid=h.holder_pid, libvirtd_pid=h.libvirtd_pid,
                        host_uuid=h.host_uuid)

    @property
    def src(self) -> HostInfo:
        return self.host(SRC)

    @property
    def dst(self) -> HostInfo:
        return self.host(DST)

    @property
    def virt_type(self) -> str:
        st = self._load()
        if st is None:
            raise TestbedError("testbed is not up")
        return st.virt_type

    def is_up(self) -> bool:
        st = self._load()
        return st is not None and len(st.hosts) == 2 and all(
            alive(h.holder_pid, h.holder_start) and alive(h.libvirtd_pid, h.libvirtd_start)
            for h in st.hosts.values())

    # ------------------------------------------------------------------------------------------ up
    def up(self) -> dict[str, Any]:
        """Bring both hosts up (clearing any remains of an earlier, crashed testbed first) and return
        status(). Raises TestbedError if this testbed is already up; on any failure it tears down
        what it built and re-raises."""
        if os.geteuid() != 0:
            raise TestbedError("the testbed needs root (namespaces, mounts, veth, libvirtd)")
        missing = [t for t in _REQUIRED_TOOLS if shutil.which(t) is None]
        if missing or not os.path.exists(QEMU):
            raise TestbedError(f"missing {missing or [QEMU]}: run scripts/bootstrap.sh executor "
                               "(qemu-system-x86 libvirt-daemon-system iproute2 ...)")
        if self.is_up():
            raise TestbedError(f"testbed already up (state in {self.state_dir}); call down() first")
        if self.config.rtt_ms > 0 and not netem_available():
            raise TestbedError(f"rtt_ms={self.config.rtt_ms} needs the netem qdisc, which this kernel "
                               "lacks (CONFIG_NET_SCH_NETEM); only bandwidth shaping (tbf) is possible")
        self.down()
        try:
            return self._up()
        except TestbedError as first:
            # A namespace holder has been seen to vanish during setup once in several dozen runs
            # (cause unknown): start over once, from nothing, before giving up.
            self.down()
            print(f"pausecast: testbed setup failed ({first}); retrying once", file=sys.stderr)
            try:
                return self._up()
            except BaseException:
                self.down()
                raise
        except BaseException:
            self.down()
            raise

    def _up(self) -> dict[str, Any]:
        cfg = self.config
        deadline = time.monotonic() + cfg.timeout_s
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)
        kernel = build_guest()
        if cfg.virt_type == "auto":
            virt_type, reason = detect_virt_type(kernel)
        else:
            virt_type, reason = cfg.virt_type, "configured"
        st = _State(config=asdict(cfg), virt_type=virt_type, virt_reason=reason)
        for name in HOSTS:
            st.hosts[name] = _HostState(name=name, address=cfg.address(name), veth=f"{name}0",
                                        host_uuid=str(uuid.uuid4()))
            self._write_host_files(st.hosts[name])
        self.guest_dir().mkdir(exist_ok=True)
        shutil.copy2(kernel, self.guest_dir() / "dirtier.elf")
        self._save(st)

        for h in st.hosts.values():
            self._start_holder(h)
            self._save(st)
            self._setup_mounts(h)
        self._setup_link(st)
        self.shape(cfg.bandwidth_mbit_s, cfg.rtt_ms, _state=st)
        for h in st.hosts.values():
            self._start_libvirtd(h)
            self._save(st)
        for h in st.hosts.values():
            self._wait_libvirtd(h, deadline)
        self._warm_capabilities(st)
        # The peer-to-peer path: each daemon's TCP port, from the other host, over the veth.
        for a, b in ((SRC, DST), (DST, SRC)):
            self.run_in(a, ["bash", "-c", f"exec 3<>/dev/tcp/{st.hosts[b].address}/{LIBVIRTD_PORT}"],
                        timeout=10)
        return self.status()

    def _write_host_files(self, h: _HostState) -> None:
        d = self._host_dir(h.name)
        for sub in ("etc", "etc/qemu", "lib", "log", "cache/qemu/capabilities", "run"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        # libvirt probes QEMU (seconds) the first time a host needs it - for the destination, inside
        # the first migration's Prepare. Seed each host with the probe result kept from earlier runs;
        # libvirt re-probes by itself if QEMU or libvirt changed since.
        caps_cache = capabilities_cache_dir()
        for f in caps_cache.glob("*.xml") if caps_cache.is_dir() else ():
            shutil.copy2(f, d / "cache" / "qemu" / "capabilities" / f.name)
        (d / "etc" / "libvirtd.conf").write_text(_libvirtd_conf(h.address, h.host_uuid))
        (d / "etc" / "qemu.conf").write_text(_qemu_conf(h.address))
        hosts = ["127.0.0.1 localhost", *(f"{self.config.address(n)} {n}" for n in HOSTS)]
        (d / "hosts").write_text("\n".join(hosts) + "\n")

    def _start_holder(self, h: _HostState) -> None:
        # `exec -a` names the holder so a later down() can find it even without state.json.
        argv0 = f"{MARKER}-holder:{h.name}:{self.state_dir}"
        proc = subprocess.Popen(
            ["unshare", "--uts", "--mount", "--net", "--propagation", "private", "--",
             "bash", "-c", 'exec -a "$0" sleep infinity', argv0],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self._children.append(proc)
        root_net = ns_inode("self", "net")
        t0 = time.monotonic()
        while not cmdline(proc.pid).startswith(argv0):
            if proc.poll() is not None:
                raise TestbedError(f"namespace holder for {h.name} exited ({proc.returncode})")
            if time.monotonic() - t0 > 10:
                raise TestbedError(f"namespace holder for {h.name} did not start")
            time.sleep(0.01)
        h.holder_pid, h.holder_start = proc.pid, start_time(proc.pid)
        h.netns_inode = ns_inode(proc.pid, "net")
        if h.netns_inode == root_net:
            raise TestbedError("unshare did not create a network namespace")

    def _setup_mounts(self, h: _HostState) -> None:
        d = self._host_dir(h.name)
        binds = [(d / "run", "/run/libvirt"), (d / "etc", "/etc/libvirt"),
                 (d / "lib", "/var/lib/libvirt"), (d / "log", "/var/log/libvirt"),
                 (d / "cache", "/var/cache/libvirt"), (d / "hosts", "/etc/hosts")]
        script = ["set -e", f"hostname {h.name}",
                  # A private /run: libvirtd's pid file and runtime state must not collide across hosts.
                  "mount -t tmpfs -o mode=0755,size=64m pausecast-run /run"]
        for src, dst in binds:
            if src.is_dir():
                script.append(f"mkdir -p {dst}")
            script.append(f"mount --bind {src} {dst}")
        script.append("ip link set lo up")
        run([*_nsenter(h.holder_pid), "sh", "-c", "\n".join(script)])

    def _setup_link(self, st: _State) -> None:
        s, d = st.hosts[SRC], st.hosts[DST]
        run(["ip", "link", "add", s.veth, "netns", str(s.holder_pid), "type", "veth",
              "peer", "name", d.veth, "netns", str(d.holder_pid)])
        for h in (s, d):
            self.run_in(h.name, ["ip", "addr", "add", f"{h.address}/{self.config.prefix_len}",
                                 "dev", h.veth])
            self.run_in(h.name, ["ip", "link", "set", h.veth, "up"])

    def shape(self, bandwidth_mbit_s: float | None, rtt_ms: float = 0.0, *,
              _state: _State | None = None) -> None:
        """(Re)shape the link between the hosts: both veth ends get the full bandwidth and half the RTT.
        None/0 removes the shaping."""
        st = _state or self._load()
        if st is None:
            raise TestbedError("testbed is not up")
        if rtt_ms > 0 and not netem_available():
            raise TestbedError(f"rtt_ms={rtt_ms} needs the netem qdisc, which this kernel lacks "
                               "(CONFIG_NET_SCH_NETEM); only bandwidth shaping (tbf) is possible here")
        for h in st.hosts.values():
            self.run_in(h.name, ["tc", "qdisc", "del", "dev", h.veth, "root"], check=False)
            for cmd in shaping_commands(h.veth, bandwidth_mbit_s, rtt_ms):
                self.run_in(h.name, cmd)
        st.config["bandwidth_mbit_s"], st.config["rtt_ms"] = bandwidth_mbit_s, rtt_ms
        if _state is None:
            self._save(st)

    def _start_libvirtd(self, h: _HostState) -> None:
        d = self._host_dir(h.name)
        # The config path names the state dir, which is how down() recognises a stray libvirtd.
        log = open(d / "log" / "libvirtd.stderr", "ab")  # noqa: SIM115 - handed to the child
        try:
            # libvirtd runs under files/reaper.py, a subreaper: QEMU's zombies are reaped at once
            proc = subprocess.Popen([*_nsenter(h.holder_pid), sys.executable, str(FILES_DIR / "reaper.py"),
                                     "libvirtd", "--listen", "--config", str(d / "etc" / "libvirtd.conf")],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        finally:
            log.close()
        self._children.append(proc)
        h.libvirtd_pid, h.libvirtd_start = proc.pid, start_time(proc.pid)

    def _warm_capabilities(self, st: _State) -> None:
        """Make both daemons probe QEMU now, in parallel, and keep the result for the next up()."""
        import libvirt

        errors: list[str] = []

        def warm(name: str) -> None:
            try:
                conn = libvirt.open(f"qemu+unix:///system?socket={self.socket_path(name)}")
                try:
                    conn.getDomainCapabilities(QEMU, "x86_64", "pc", st.virt_type)
                finally:
                    conn.close()
            except libvirt.libvirtError as e:
                errors.append(f"{name}: {e}")

        threads = [threading.Thread(target=warm, args=(n,)) for n in st.hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise TestbedError(f"libvirt cannot use {QEMU} with virt type {st.virt_type}: {errors}")
        with contextlib.suppress(OSError):
            capabilities_cache_dir().mkdir(parents=True, exist_ok=True)
            for f in (self._host_dir(SRC) / "cache" / "qemu" / "capabilities").glob("*.xml"):
                shutil.copy2(f, capabilities_cache_dir() / f.name)

    def _wait_libvirtd(self, h: _HostState, deadline: float) -> None:
        import libvirt

        sock = self.socket_path(h.name)
        last = ""
        while time.monotonic() < deadline:
            if not alive(h.libvirtd_pid, h.libvirtd_start):
                raise TestbedError(f"libvirtd on {h.name} exited; see {self._host_dir(h.name)}/log")
            if sock.exists():
                try:
                    conn = libvirt.open(f"qemu+unix:///system?socket={sock}")
                    try:
                        if conn.getHostname() != h.name:
                            raise TestbedError(f"libvirtd on {h.name} reports host {conn.getHostname()}")
                        return
                    finally:
                        conn.close()
                except libvirt.libvirtError as e:
                    last = str(e)
            time.sleep(0.1)
        raise TestbedError(f"libvirtd on {h.name} not reachable at {sock}: {last}")

    # ---------------------------------------------------------------------------------- using it
    def run_in(self, host: str, argv: list[str], *, check: bool = True,
               timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command inside a host's namespaces."""
        st = self._load()
        if st is None or host not in st.hosts or not st.hosts[host].holder_pid:
            raise TestbedError("testbed is not up")
        return run([*_nsenter(st.hosts[host].holder_pid), *argv], check=check, timeout_s=timeout)

    def connect(self, host: str) -> Any:
        """A libvirt connection (from the root namespace) to a host's daemon, cached until down()."""
        import libvirt

        conn = self._conns.get(host)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                if conn.isAlive():
                    return conn
        conn = libvirt.open(self.host(host).uri)
        self._conns[host] = conn
        return conn

    # ------------------------------------------------------------------------------------ faults
    def libvirtd_pids(self, host: str) -> list[int]:
        """Every libvirtd of `host` running: its command line names the host's directory (--config)."""
        daemon_dir = f"{self._host_dir(host)}/"
        return [p for p in all_pids() if (argv := argv_of(p)) and os.path.basename(argv[0]) == "libvirtd"
                and any(a.startswith(daemon_dir) for a in argv)]

    def kill_libvirtd(self, host: str) -> list[int]:
        """SIGKILLs a host's libvirtd, as a crash would; its QEMUs keep running. Returns the pids."""
        pids = self.libvirtd_pids(host)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._conns.pop(host, None)
        return pids

    def restart_libvirtd(self, host: str) -> None:
        """Starts a host's libvirtd again (after kill_libvirtd or a crash); it finds its QEMUs."""
        st = self._load()
        if st is None or host not in st.hosts:
            raise TestbedError("testbed is not up")
        h = st.hosts[host]
        if alive(h.libvirtd_pid, h.libvirtd_start):
            self.kill_libvirtd(host)
            t0 = time.monotonic()
            while alive(h.libvirtd_pid, h.libvirtd_start) and time.monotonic() - t0 < 5:
                reap(h.libvirtd_pid)
                time.sleep(0.05)
        self._start_libvirtd(h)
        self._save(st)
        self._wait_libvirtd(h, time.monotonic() + self.config.timeout_s)

    def qemu_pids(self, host: str, guest: str) -> list[int]:
        """The QEMU processes of `guest` on `host`: their command line names the guest (-name
        guest=...) and their network namespace is the host's."""
        st = self._load()
        if st is None or host not in st.hosts:
            raise TestbedError("testbed is not up")
        netns = st.hosts[host].netns_inode
        return [p for p in all_pids() if (argv := argv_of(p)) and os.path.basename(argv[0]).startswith("qemu")
                and any(a == f"guest={guest}" or a.startswith(f"guest={guest},") for a in argv)
                and ns_inode(p, "net") == netns]

    def kill_qemu_in_finish(self, guest: str, timeout_s: float = 120.0) -> str:
        """SIGKILLs `guest`'s QEMU on the destination during Finish, which takes milliseconds, so
        deterministically: waits for the destination daemon to log Finish's start, freezes the daemon
        (SIGSTOP) at once, kills the QEMU if the daemon has not logged "cont" yet (qemuProcessStartCPUs)
        and lets the daemon go on (SIGCONT); its Finish then finds its QEMU gone. Blocks: start it in a
        thread before the migration. Returns "killed", or why not: "missed" (the daemon had sent "cont"
        when it froze), "no QEMU" (none of that guest there) or "no Finish" (none logged within
        `timeout_s`)."""
        finish, start_cpus = mark_line("finish"), mark_line("start cpus")
        daemons = self.libvirtd_pids(DST)
        deadline = time.monotonic() + timeout_s
        with open(self.migration_log(DST), "rb") as log:
            log.seek(0, os.SEEK_END)
            tail = b""
            while True:
                # a tight poll of what is new only: the daemon reaches "cont" a few ms after Finish starts
                text = tail + log.read()
                if (at := text.find(finish)) >= 0:
                    since_finish = text[at:]
                    break
                tail = text[-len(finish):]
                if time.monotonic() > deadline:
                    return "no Finish"
                time.sleep(0.0005)
            for pid in daemons:
                os.kill(pid, signal.SIGSTOP)
            try:
                # what the daemon wrote before it froze
                time.sleep(0.05)
                if start_cpus in since_finish + log.read():
                    return "missed"
                qemus = self.qemu_pids(DST, guest)
                for pid in qemus:
                    os.kill(pid, signal.SIGKILL)
                gone_by = time.monotonic() + 5.0
                while any(alive(pid, None) for pid in qemus) and time.monotonic() < gone_by:
                    time.sleep(0.01)
                return "killed" if qemus else "no QEMU"
            finally:
                for pid in daemons:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)

    def set_link(self, up: bool) -> None:
        """Cuts the link between the hosts (both veth ends down) or restores it."""
        for name in HOSTS:
            self.run_in(name, ["ip", "link", "set", self.host(name).veth, "up" if up else "down"])

    def guest_xml(self, name: str, *, memory_mib: int, dirty: DirtySpec, vcpus: int = 1) -> str:
        return domain_xml(name, kernel=self.guest_dir() / "dirtier.elf", dirty=dirty, memory_mib=memory_mib,
                          vcpus=vcpus, virt_type=self.virt_type, serial_log=self.serial_log(name))

    def start_guest(self, name: str, *, memory_mib: int = 256, dirty: DirtySpec | None = None,
                    host: str = SRC, persistent: bool = True, wait_running_s: float = 30.0,
                    vcpus: int = 1) -> Any:
        """Define and start the test guest on `host`; return its virDomain once the guest reports it has
        filled its region and started dirtying. Persistent by default, so the source keeps the domain
        (and its completed-job statistics) after it has migrated away."""
        import libvirt

        dirty = dirty or DirtySpec()
        conn = self.connect(host)
        log = self.serial_log(name)
        log.unlink(missing_ok=True)
        xml = self.guest_xml(name, memory_mib=memory_mib, dirty=dirty, vcpus=vcpus)
        dom = conn.defineXML(xml) if persistent else None
        try:
            if dom is not None:
                dom.create()
            else:
                dom = conn.createXML(xml, 0)
        except libvirt.libvirtError:
            if dom is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
            raise
        t0 = time.monotonic()
        while not guest_started(log):
            if guest_faulted(log) or not dom.isActive():
                raise TestbedError(f"guest {name} stopped before it started dirtying; see {log}")
            if time.monotonic() - t0 > wait_running_s:
                raise TestbedError(f"guest {name} did not start dirtying within {wait_running_s:.0f} s")
            time.sleep(0.05)
        return dom

    def destroy_guest(self, name: str) -> None:
        """Destroy and undefine a guest wherever it is."""
        import libvirt

        for host in HOSTS:
            with contextlib.suppress(libvirt.libvirtError):
                dom = self.connect(host).lookupByName(name)
                with contextlib.suppress(libvirt.libvirtError):
                    dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()

    def port_observer(self) -> PortObserver | None:
        """Who can say when the guest's switch port forwarded during a migration: no one here (the
        plain testbed's guest has no NIC); the 802.1Qbg testbed watches its switch."""
        return None

    def lldpad_log(self, host: str) -> Path | None:
        """A host's lldpad debug log, where its VDP faults show: none here (the plain testbed runs no
        lldpad); the 802.1Qbg testbed keeps one per host."""
        return None

    def play_switch(self, spec: SwitchSpec) -> None:
        """Makes the switch of an up testbed play `spec`: the plain testbed has no switch; the 802.1Qbg
        testbed restarts its emulator if it plays another [switch]."""

    def measure_rtt_ms(self, samples: int = 20) -> float:
        """The round trip between the hosts: the fastest of `samples` TCP handshakes (a SYN and its
        SYN-ACK) from the source to the destination's libvirtd port, timed inside the source's
        namespaces. An upper bound (it includes two system calls); there is no ping on this machine."""
        r = self.run_in(SRC, [sys.executable, str(FILES_DIR / "rtt_probe.py"), self.dst.address,
                              str(LIBVIRTD_PORT), str(samples)])
        return float(r.stdout.strip())

    # ----------------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        st = self._load()
        out: dict[str, Any] = {"state_dir": str(self.state_dir), "up": False}
        if st is None:
            out["leftovers"] = self.leftovers()
            return out
        out.update(virt_type=st.virt_type, virt_reason=st.virt_reason, created=st.created,
                   link={"subnet": st.config["subnet"], "bandwidth_mbit_s": st.config["bandwidth_mbit_s"],
                         "rtt_ms": st.config["rtt_ms"]}, hosts={})
        all_ok = True
        for name, h in st.hosts.items():
            info = asdict(self.host(name))
            info["holder_alive"] = alive(h.holder_pid, h.holder_start)
            info["libvirtd_alive"] = alive(h.libvirtd_pid, h.libvirtd_start)
            info["domains"] = self._domains(name) if info["libvirtd_alive"] else None
            if info["holder_alive"]:
                r = self.run_in(name, ["tc", "qdisc", "show", "dev", h.veth], check=False)
                info["qdisc"] = r.stdout.strip()
            all_ok &= info["holder_alive"] and info["libvirtd_alive"]
            out["hosts"][name] = info
        out["up"] = all_ok and len(st.hosts) == 2
        return out

    def _domains(self, host: str) -> dict[str, str] | None:
        import libvirt

        states = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
                  libvirt.VIR_DOMAIN_SHUTOFF: "shutoff"}
        try:
            return {d.name(): states.get(d.state()[0], str(d.state()[0]))
                    for d in self.connect(host).listAllDomains()}
        except libvirt.libvirtError:
            return None

    # ------------------------------------------------------------------------------------- down
    def _find_processes(self, st: _State | None) -> set[int]:
        """Every process that belongs to this testbed: recorded pids (same start time), anything whose
        command line names the testbed or its state dir, and anything whose mount table holds the
        testbed's bind mounts (QEMU started by a host's libvirtd; survivors of a crash)."""
        me = os.getpid()
        found: set[int] = set()
        if st is not None:
            for h in st.hosts.values():
                for pid, start in ((h.holder_pid, h.holder_start), (h.libvirtd_pid, h.libvirtd_start)):
                    if pid and alive(pid, start):
                        found.add(pid)
        own_mnt = ns_inode("self", "mnt")
        needle = str(self.state_dir)
        netns = {h.netns_inode for h in st.hosts.values()} - {None} if st else set()
        for pid in all_pids():
            if pid == me:
                continue
            argv = argv_of(pid)
            if not argv:
                continue  # kernel thread or gone
            if argv[0].startswith(f"{MARKER}-holder:") and argv[0].endswith(f":{needle}"):
                found.add(pid)
                continue
            if os.path.basename(argv[0]) == "libvirtd" and any(a.startswith(needle + "/") for a in argv):
                found.add(pid)
                continue
            mnt = ns_inode(pid, "mnt")
            if mnt in (own_mnt, None):
                continue
            if netns and ns_inode(pid, "net") in netns:
                found.add(pid)
                continue
            try:
                if needle + "/" in Path(f"/proc/{pid}/mountinfo").read_text():
                    found.add(pid)
            except OSError:
                pass
        return found

    def leftovers(self) -> dict[str, list[str]]:
        """What of a testbed is still on the machine: processes, mounts (in the root namespace), links
        and named namespaces. All empty after down()."""
        procs = sorted(self._find_processes(self._load()))
        mounts = []
        with contextlib.suppress(OSError):
            mounts = [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                      if str(self.state_dir) in ln]
        links = [n for n in (f"{h}0" for h in HOSTS) if Path(f"/sys/class/net/{n}").exists()]
        netns = []
        r = run(["ip", "netns", "list"], check=False)
        netns = [ln for ln in r.stdout.splitlines() if ln.split()[:1] and ln.split()[0] in HOSTS]
        return {"processes": [f"{p} {cmdline(p)[:120]}" for p in procs], "mounts": mounts,
                "links": links, "netns": netns}

    def down(self, *, keep_logs: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Tear everything down: processes, (thereby) namespaces, veth, mounts, the state dir. Safe to
        call twice, on a testbed that never came up, and after a crash. keep_logs: a directory to copy
        the hosts' logs and the guests' serial logs into first."""
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._conns.clear()
        st = self._load()
        if keep_logs is not None and self.state_dir.is_dir():
            dest = Path(keep_logs)
            dest.mkdir(parents=True, exist_ok=True)
            for name in HOSTS:
                if (self._host_dir(name) / "log").is_dir():
                    shutil.copytree(self._host_dir(name) / "log", dest / name, dirs_exist_ok=True)
            if self.guest_dir().is_dir():
                shutil.copytree(self.guest_dir(), dest / "guests", dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("*.elf"))
        killed: list[int] = []
        for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            pids = self._find_processes(st)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if pid not in killed:
                    killed.append(pid)
            t0 = time.monotonic()
            while time.monotonic() - t0 < wait_s:
                for p in list(self._children):
                    if p.poll() is not None:
                        self._children.remove(p)
                for pid in pids:
                    reap(pid)
                if not any(alive(p, None) for p in pids):
                    break
                time.sleep(0.05)
        for p in self._children:
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
        self._children.clear()
        # QEMU daemonizes, so its zombie is init's to reap: give init a moment, so that "nothing left"
        # holds for ps as well.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3 and any(os.path.exists(f"/proc/{p}") for p in killed):
            time.sleep(0.05)
        # Namespaces die with their last process and take the veth ends with them; a link can only be
        # left in the root namespace by an up() that crashed between creating and moving it.
        removed_links = []
        for name in HOSTS:
            if Path(f"/sys/class/net/{name}0").exists():
                run(["ip", "link", "del", f"{name}0"], check=False)
                removed_links.append(f"{name}0")
        for ln in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            parts = ln.split()
            if len(parts) > 4 and parts[4].startswith(str(self.state_dir)):
                run(["umount", "-l", parts[4]], check=False)
        if self.state_dir.is_dir():
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return {"killed": killed, "removed_links": removed_links, "leftovers": self.leftovers()}


# ----------------------------------------------------------------------------- module-level helpers


def up(config: TestbedConfig | None = None, **overrides: Any) -> Testbed:
    tb = Testbed(config, **overrides)
    tb.up()
    return tb


def down(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, **kw: Any) -> dict[str, Any]:
    return Testbed(TestbedConfig(state_dir=Path(state_dir))).down(**kw)


def status(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> dict[str, Any]:
    return Testbed(TestbedConfig(state_dir=Path(state_dir))).status()
