"""Overheads profiles: the fixed costs of a migration that are not moving memory.

`default` holds the figures measured on the namespace testbed of this project (Debian 12,
libvirt 9.0, QEMU 7.2) where one exists, and small estimates marked as such elsewhere;
`pausecast calibrate` measures all of them and writes a profile file with the same keys.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from .limits import OVERHEAD_MS

OVERHEAD_FIELDS = ("begin_ms", "prepare_ms", "setup_ms", "handshake_ms", "finish_ms", "resume_ms",
                   "confirm_ms", "announce_ms")

DEFAULT_PROFILE_MS = {
    "begin_ms": 10.0,       # estimate: source builds the domain XML and the cookie
    "prepare_ms": 240.0,    # measured: destination QEMU started paused with -incoming (~0.24 s)
    "setup_ms": 300.0,      # measured: QEMU migration setup before the first page is sent (~0.3 s)
    "handshake_ms": 1.0,    # estimate: pause-before-switchover event and libvirt's migrate-continue
    "finish_ms": 10.0,      # estimate: destination Finish housekeeping before the vCPUs start
    "resume_ms": 3.0,       # measured: vCPUs start ~3 ms after the Finish associate request
    "confirm_ms": 1800.0,   # measured: tearing the source QEMU down in Confirm (~1.8 s)
    # measured: the first self-announce (RARP) reached the switch port 0.9-1.0 ms after QEMU's RESUME
    # (QEMU sends round one at once, net/announce.c; announce-initial, 50 ms, is the wait before round two)
    "announce_ms": 1.0,
}

NO_OVERHEADS_MS = dict.fromkeys(OVERHEAD_FIELDS, 0.0)
# what a calibrated profile may also say about the link between its hosts ([link]): the scenario's
# [link] takes them where it does not set them itself (models/files.py)
LINK_PROFILE_FIELDS = ("efficiency", "final_copy_efficiency", "socket_backlog_mib", "sender_mib_s",
                       "final_copy_sender_mib_s")


def load_overheads_profile(profile: str) -> dict[str, float]:
    """Returns every fixed cost in ms for a profile name or path. Raises ValueError saying why not."""
    if profile == "default":
        return dict(DEFAULT_PROFILE_MS)
    if profile == "none":
        return dict(NO_OVERHEADS_MS)
    path = Path(profile)
    data = _read_profile(path)
    table = data.get("overheads", data)
    if not isinstance(table, dict):
        raise ValueError(f"profile {path}: overheads = {table!r} must be a table")
    costs = dict(DEFAULT_PROFILE_MS)
    for key, value in table.items():
        if key not in OVERHEAD_FIELDS:
            continue  # a calibrated profile also records how it was measured
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"profile {path}: {key} = {value!r} must be a number >= 0")
        if not math.isfinite(value) or value > OVERHEAD_MS.value:
            raise ValueError(f"profile {path}: {key} = {value!r} must be finite, at most "
                             f"{OVERHEAD_MS}")
        costs[key] = float(value)
    return costs


def load_link_profile(profile: str) -> dict[str, object]:
    """The [link] values a profile file carries (LINK_PROFILE_FIELDS), unchecked; none for the built-in
    profiles. Raises ValueError as load_overheads_profile does."""
    if profile in ("default", "none"):
        return {}
    path = Path(profile)
    link = _read_profile(path).get("link", {})
    if not isinstance(link, dict):
        raise ValueError(f"profile {path}: link = {link!r} must be a table")
    return {k: v for k, v in link.items() if k in LINK_PROFILE_FIELDS}


def _read_profile(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ValueError(f'allowed: "none", "default" or a readable profile file ({path} is not)') from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"profile {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"profile {path} is not valid TOML ({exc})") from None
    return data
