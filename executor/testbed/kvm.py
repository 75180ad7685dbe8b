"""Which accelerator the testbed's QEMU gets: KVM if /dev/kvm can create a VM *and* the test guest
boots and fills memory at a sane speed under it, otherwise TCG ("qemu" domain type).

A software-backed /dev/kvm such as kvm_pvm, found on this project's CI machines, passes KVM_CREATE_VM
yet runs a 32-bit unpaged guest by emulation, orders of magnitude slower than TCG: only timing the
guest tells. The verdict is cached per boot. Beside it, libvirt's probe of QEMU's capabilities is kept
across testbeds (capabilities_cache_dir).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from .guest_build import build_guest, default_cache_dir

QEMU = "/usr/bin/qemu-system-x86_64"


def _kvm_creates_vm() -> tuple[bool, str]:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"/dev/kvm: {e.strerror}"
    try:
        if fcntl.ioctl(fd, 0xAE00) != 12:  # KVM_GET_API_VERSION
            return False, "/dev/kvm: unexpected API version"
        vm = fcntl.ioctl(fd, 0xAE01, 0)  # KVM_CREATE_VM
        os.close(vm)
        return True, "KVM_CREATE_VM ok"
    except OSError as e:
        return False, f"KVM_CREATE_VM failed: {e.strerror}"
    finally:
        os.close(fd)


def probe_kvm(kernel: Path, timeout_s: float = 6.0, fill_mib: int = 16,
              max_fill_ms: int = 200) -> tuple[bool, str]:
    """Boot the test guest under -accel kvm, outside libvirt, and time its memory fill. Slow software
    KVM (e.g. a nested hypervisor emulating 32-bit unpaged code) passes KVM_CREATE_VM yet boots for
    seconds and writes memory at ~1 MiB/s; TCG is far better there."""
    ok, why = _kvm_creates_vm()
    if not ok:
        return False, why
    with tempfile.TemporaryDirectory(prefix="pc-kvmprobe-") as tmp:
        log = Path(tmp) / "serial.log"
        cmd = [QEMU, "-accel", "kvm", "-machine", "pc", "-m", str(fill_mib + 16), "-nodefaults",
               "-no-user-config", "-display", "none", "-kernel", str(kernel),
               "-append", f"region_mib={fill_mib} report_ms=1000", "-serial", f"file:{log}"]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < timeout_s:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                    return False, f"qemu -accel kvm exited: {err[-300:]}"
                m = re.search(rb"pcd filled fill_ms=(\d+)", log.read_bytes() if log.exists() else b"")
                if m:
                    fill_ms = int(m.group(1))
                    boot = time.monotonic() - t0
                    if fill_ms > max_fill_ms:
                        return False, f"KVM too slow: {fill_mib} MiB fill took {fill_ms} ms"
                    return True, f"KVM ok: boot {boot:.2f} s, {fill_mib} MiB fill {fill_ms} ms"
                time.sleep(0.05)
            pvm = " (/dev/kvm is kvm_pvm)" if Path("/sys/module/kvm_pvm").exists() else ""
            return False, f"KVM too slow{pvm}: guest not running after {timeout_s:.0f} s"
        finally:
            proc.kill()
            proc.wait()


def detect_virt_type(kernel: Path | None = None, *, use_cache: bool = True) -> tuple[str, str]:
    """("kvm" | "qemu", reason). The verdict is cached per boot (keyed by the kernel's boot_id)."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "unknown"
    cache = default_cache_dir() / f"virt-{boot_id}.json"
    if use_cache and cache.is_file():
        with contextlib.suppress(ValueError, KeyError, OSError):
            d = json.loads(cache.read_text())
            return d["virt_type"], d["reason"] + " (cached)"
    ok, why = probe_kvm(kernel or build_guest())
    verdict = ("kvm" if ok else "qemu", why)
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"virt_type": verdict[0], "reason": verdict[1]}))
    return verdict


def capabilities_cache_dir() -> Path:
    """Where libvirt's probe of QEMU (seconds per host) is kept between testbeds: libvirt re-probes by
    itself if QEMU or libvirt changed since."""
    return default_cache_dir().parent / "libvirt-qemu-capabilities"
