"""Build the test guest: a few-KB multiboot ELF (executor/testbed/files/dirtier.c) that QEMU boots
with -kernel.

The system gcc/ld build it (Debian: gcc, gcc-multilib, binutils). The result is cached by a hash of the
sources, the flags and the toolchain versions, so a second call costs two `--version` runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .package_files import FILES_DIR

SOURCES = ("dirtier.c", "dirtier.ld")

# Freestanding 32-bit code with no FPU/SSE (nothing sets them up) and nothing that would call libgcc or
# an implicit memset/memcpy (there is no libc to link).
CFLAGS = (
    "-m32", "-march=i686", "-O2", "-ffreestanding", "-nostdlib", "-fno-pic", "-fno-pie",
    "-fno-stack-protector", "-fno-builtin", "-fno-tree-loop-distribute-patterns",
    "-fno-asynchronous-unwind-tables", "-mno-sse", "-mno-mmx", "-mno-80387", "-Wall", "-Wextra",
)
LDFLAGS = ("-m", "elf_i386", "-nostdlib", "-z", "max-page-size=0x1000", "-z", "noexecstack",
           "--no-warn-rwx-segments")


class GuestBuildError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "pausecast" / "guest"


def _tool_versions(cc: str, ld: str) -> str:
    out = []
    for tool in (cc, ld):
        try:
            r = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise GuestBuildError(f"{tool} not usable ({e}); install Debian packages gcc gcc-multilib "
                                  "binutils") from e
        out.append(r.stdout.splitlines()[0] if r.stdout else tool)
    return "\n".join(out)


def guest_hash(cc: str = "gcc", ld: str = "ld") -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (FILES_DIR / name).read_bytes() + b"\0")
    h.update(" ".join(CFLAGS + LDFLAGS).encode())
    h.update(_tool_versions(cc, ld).encode())
    return h.hexdigest()[:16]


def build_guest(out_dir: str | os.PathLike[str] | None = None, *, cc: str = "gcc", ld: str = "ld",
                force: bool = False) -> Path:
    """Return the path of the built guest ELF in out_dir (default: the user cache dir), building it
    only when no ELF for the current sources and toolchain is there yet."""
    out = Path(out_dir) if out_dir is not None else default_cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    elf = out / f"dirtier-{guest_hash(cc, ld)}.elf"
    if elf.is_file() and not force:
        return elf
    with tempfile.TemporaryDirectory(prefix="pcguest-", dir=out) as tmp:
        obj, tmp_elf = Path(tmp) / "dirtier.o", Path(tmp) / "dirtier.elf"
        steps = (
            [cc, *CFLAGS, "-c", str(FILES_DIR / "dirtier.c"), "-o", str(obj)],
            [ld, *LDFLAGS, "-T", str(FILES_DIR / "dirtier.ld"), str(obj), "-o", str(tmp_elf)],
        )
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                hint = ""
                if "-m32" in cmd and ("bits/" in r.stderr or "gnu/stubs-32" in r.stderr):
                    hint = " (is gcc-multilib installed?)"
                raise GuestBuildError(f"guest build failed{hint}: {' '.join(cmd)}\n{r.stderr}")
        _check_multiboot(tmp_elf)
        os.replace(tmp_elf, elf)
    return elf


def _check_multiboot(elf: Path) -> None:
    """QEMU silently treats a file without the header in its first 8 KiB as a Linux kernel."""
    head = elf.read_bytes()[:8192]
    if head[:5] != b"\x7fELF\x01":
        raise GuestBuildError(f"{elf}: not a 32-bit ELF")
    magic = (0x1BADB002).to_bytes(4, "little")
    off = head.find(magic)
    if off < 0 or off % 4:
        raise GuestBuildError(f"{elf}: multiboot header not in the first 8 KiB")


def clean_cache(out_dir: str | os.PathLike[str] | None = None) -> None:
    shutil.rmtree(Path(out_dir) if out_dir is not None else default_cache_dir(), ignore_errors=True)
