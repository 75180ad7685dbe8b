"""`pausecast report`: one self-contained HTML page of a sweep, an evacuation and a validation, opened in
headless Chromium (Debian's package, which bootstrap installs): it renders, every figure decodes, the
console stays silent (the page's policy would log any fetch it blocked), and a screenshot shows it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
from matplotlib.image import imread

from pausecast.analysis.validation import Comparison, verdict
from pausecast.cli import main
from pausecast.models.files import scenario_from_dict
from pausecast.runs.store import read_manifest
from pausecast.runs.validation_report import write_report
from pausecast.sim import predict

from .test_results_store import SMALL

REPO = Path(__file__).resolve().parent.parent
SWEEP = """
name = "page"
seed = 3
[base]
vm = { memory_mib = 1024 }
[[axes]]
field = "vm.dirty.rate_mib_s"
values = [20, 80, 400]
[[axes]]
field = "migration.max_downtime_ms"
values = [50, 300, 1000]
"""
CHROMIUM = shutil.which("chromium")


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium as root (no sandbox), with the page's console messages on stderr."""
    assert CHROMIUM, "chromium is missing: scripts/bootstrap.sh installs it with the dev extra"
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=5000", *args], capture_output=True, text=True,
                          timeout=120)


def console_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def opened(page: Path, shot: Path) -> tuple[str, list[str]]:
    """The page's DOM after load, what its console said, and a screenshot at `shot`."""
    dom = chromium("--dump-dom", page.as_uri())
    chromium("--window-size=1280,1800", f"--screenshot={shot}", page.as_uri())
    return dom.stdout, console_of(dom)


def assert_it_renders(page: Path, figures: int, tmp_path: Path) -> str:
    text = page.read_text()
    # self-contained: nothing to fetch, from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", text)
    dom, console = opened(page, tmp_path / f"{page.parent.name}.png")
    assert console == []
    assert f'data-figures="{figures}/{figures}"' in dom
    pixels = imread(tmp_path / f"{page.parent.name}.png")
    # a page, not a blank screen: text and figures make many shades
    shades = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    assert pixels.shape[:2] == (1800, 1280) and len(shades) > 50
    return text


def test_the_console_check_hears_a_page_that_fetches_or_fails(tmp_path):
    # the same policy as the report's: a page that tries the network is blocked, and says so
    from pausecast.report.html import POLICY

    bad = tmp_path / "bad.html"
    bad.write_text(f'<html><head><meta http-equiv="Content-Security-Policy" content="{POLICY}"></head>'
                   '<body><img src="http://192.0.2.1/x.png"><script>console.error("boom")</script></body></html>')
    console = console_of(chromium("--dump-dom", bad.as_uri()))
    assert any("Content Security Policy" in line for line in console)
    assert any("boom" in line for line in console)


def test_a_sweeps_page(tmp_path, capsys):
    sweep = tmp_path / "page.toml"
    sweep.write_text(SWEEP)
    assert main(["sweep", str(sweep), "--workers", "1", "--results", str(tmp_path), "--quiet"]) == 0
    root = tmp_path / "page"
    assert main(["report", str(root)]) == 0
    assert f"wrote {root / 'report.html'}" in capsys.readouterr().out
    # the figures that fit a dirty rate x max downtime grid, as `pausecast plot` draws them
    kinds = [p.stem for p in sorted((root / "plots").glob("*.png"))]
    text = assert_it_renders(root / "report.html", len(kinds), tmp_path)
    assert all(kind in text for kind in kinds)
    assert "By max downtime" in text and "By dirty rate" in text and "All migrations" in text
    assert "report.html" in read_manifest(root)["files"]


def test_an_evacuations_page(tmp_path):
    assert main(["evacuate", str(REPO / "examples" / "evacuation.toml"), "--results", str(tmp_path)]) == 0
    (root,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    out = tmp_path / "shared" / "drain.html"
    assert main(["report", str(root), "--out", str(out)]) == 0
    text = assert_it_renders(out, 1, tmp_path)
    summary = read_manifest(root)
    assert f"Evacuation {summary['name']}" in text and "longest pause windows" in text


def test_a_validations_page(tmp_path):
    predicted = predict(scenario_from_dict(SMALL))
    points = [{"point": 0, "values": "x=1", **Comparison(predicted, predicted).row()}]
    out = tmp_path / "validation" / "tiny-1"
    write_report(out, "validation tiny", verdict(points), points, points, ["a note"])
    assert main(["report", str(out)]) == 0
    text = assert_it_renders(out / "report.html", 1, tmp_path)
    assert "validation tiny" in text and "a note" in text and "total time" in text


def test_a_folder_of_another_kind_is_one_line(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text('{"kind": "run"}')
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a run folder" in err[0]


def test_a_folder_without_a_manifest_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
