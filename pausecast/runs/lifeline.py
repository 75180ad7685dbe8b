"""Worker processes that end with the process that started them, however it ended.

A ProcessPoolExecutor's workers wait on their task queue, and the forkserver that forked them lives
while any of them holds its pipe: when the sweep's main process is killed (SIGKILL runs no cleanup),
all of them would stay, blocked, for good. Each worker therefore watches the main process through a
pidfd (Linux >= 5.3: readable once that process has exited, and never confused with a later process
of the same pid) and exits as soon as it is gone; then the forkserver and the resource tracker see
their pipes close and exit too.
"""

from __future__ import annotations

import os
import select
import threading
import time

# where pidfds are missing (another OS, an old kernel), how often a worker asks whether its main
# process still exists
POLL_S = 0.5
# a worker whose main process died ends with this status (EX_SOFTWARE): nobody reads it
ORPHANED_EXIT = 70


def die_with(main_pid: int) -> None:
    """A ProcessPoolExecutor initializer: ends this worker when `main_pid` ends."""
    try:
        pidfd = os.pidfd_open(main_pid)
    except (AttributeError, OSError):
        watch = _poll
        arg = main_pid
    else:
        watch = _wait
        arg = pidfd
    if not _alive(main_pid):
        os._exit(ORPHANED_EXIT)
    threading.Thread(target=watch, args=(arg,), name="lifeline", daemon=True).start()


def _wait(pidfd: int) -> None:
    select.select([pidfd], [], [])
    os._exit(ORPHANED_EXIT)


def _poll(main_pid: int) -> None:
    while _alive(main_pid):
        time.sleep(POLL_S)
    os._exit(ORPHANED_EXIT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's
    return True
