"""`pausecast plot`: the standard figures of a sweep's results folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..report import plots


def register(p: argparse.ArgumentParser) -> None:
    p.description = ("Draws figures from a sweep's results folder as PNG and SVG: "
                     + "; ".join(f"{kind} ({what})" for kind, what in plots.DESCRIPTIONS.items()) + ".")
    p.epilog = "Example: pausecast plot results/what-if --kind convergence-map"
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a sweep's folder, e.g. results/what-if")
    p.add_argument("--kind", action="append", choices=plots.KINDS, metavar="KIND",
                   help=f"one of {', '.join(plots.KINDS)} (repeatable; default: every one the axes fit)")
    p.add_argument("--out", metavar="DIR", help="where the files go (default: RESULTS_DIR/plots)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    for path in plots.draw(Path(args.results_dir), args.kind, out):
        print(f"pausecast: drew {path}")
    return 0
