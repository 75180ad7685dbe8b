"""Where the running code comes from: the package's version and the git commit of its source tree,
for `pausecast --version` and the results store's manifests."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

# the tree the package runs from: the checkout when installed editable (or run in place)
SOURCE_TREE = Path(__file__).resolve().parents[2]


def package_version() -> str:
    try:
        return importlib.metadata.version("pausecast")
    except importlib.metadata.PackageNotFoundError:  # run from a tree that was never installed
        from .. import __version__

        return __version__


def git_state(tree: Path = SOURCE_TREE) -> dict[str, Any]:
    """The commit the code runs from, and whether the tree has changes on top of it (None for both
    when `tree` is not the top of a git checkout)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True, timeout=10,
                                  check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    # only the tree's own checkout: a copy installed into a venv that sits inside some other checkout
    # (or a clone of this one) is not that checkout's HEAD
    top = git("rev-parse", "--show-toplevel")
    commit = git("rev-parse", "HEAD") if top and Path(top).resolve() == tree.resolve() else None
    changes = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(changes) if changes is not None else None}


def describe() -> str:
    """`pausecast 0.1.0 (git 1a2b3c4)`, `-dirty` after the commit when the tree has changes; the
    version alone outside a checkout."""
    git = git_state()
    if not git["commit"]:
        return f"pausecast {package_version()}"
    return f"pausecast {package_version()} (git {git['commit'][:7]}{'-dirty' if git['dirty'] else ''})"


# the packages whose versions a manifest records
PACKAGES = ("pausecast", "numpy", "numba", "pandas", "pyarrow", "simpy", "matplotlib", "tqdm", "dask",
            "distributed")


def versions() -> dict[str, str | None]:
    """Python's version and each of PACKAGES' (None when not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found
