"""The progress line of a real migration, like `virsh migrate --verbose` ("Migration: [ 45 %]"),
redrawn in place on a terminal and silent otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

from ..executor.migration.jobinfo import JobInfo
from ..models.units import bytes_s_to_mib_s


class ProgressLine:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.shown = False

    def __call__(self, _t_s: float, info: JobInfo) -> None:
        if not (self.enabled and info.active):
            return
        self.stream.write(f"\rMigration: [{info.progress_pct():3.0f} %]  iteration {info.memory_iteration}"
                          f"  {bytes_s_to_mib_s(info.memory_bytes_s):6.1f} MiB/s"
                          f"  dirty {info.memory_dirty_rate_pages_s} pages/s   ")
        self.stream.flush()
        self.shown = True

    def finish(self, migrated: bool) -> None:
        """Ends the line: 100 % as virsh prints it when the guest moved, else just a newline."""
        if self.shown:
            self.stream.write(("\rMigration: [100 %]" + " " * 50 if migrated else "") + "\n")
            self.stream.flush()
            self.shown = False
