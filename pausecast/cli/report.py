"""`pausecast report`: one self-contained HTML page of a results folder, to open anywhere or mail."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..report.html import render
from ..report.pages import page_of
from ..runs.store import ResultsStore, list_in_manifest

PAGE_NAME = "report.html"


def register(p: argparse.ArgumentParser) -> None:
    p.description = ("Writes one HTML page of a sweep's, an evacuation's or a validation's results folder: "
                     "what was run (the manifest's facts), the standard figures, the summary tables and "
                     "the manifest itself. The page holds everything (figures inlined, no scripts or "
                     "styles fetched), so it opens offline, from a mail or a shared drive.")
    p.epilog = "Examples: pausecast report results/what-if; pausecast report results/rack-4 --out rack-4.html"
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a folder pausecast wrote: results/<sweep>, "
                                                              "results/<fleet>, results/validation/<name>")
    p.add_argument("--out", metavar="FILE", help=f"where the page goes (default: RESULTS_DIR/{PAGE_NAME})")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root = Path(args.results_dir)
    text = render(page_of(root))
    out = Path(args.out) if args.out else root / PAGE_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    ResultsStore(out.parent).write_text(out.name, text)
    if out.parent.resolve() == root.resolve():
        list_in_manifest(root, out.name)
    print(f"pausecast: wrote {out} ({len(text.encode()) / 1024:,.0f} KiB, self-contained)")
    return 0
