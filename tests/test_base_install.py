"""The base install (`pip install pausecast`, what `make demo` does): the planners' commands run
without the executor's libvirt and pyroute2 and without numba, and the executor's commands say in one
line what to install. Each case runs the CLI in a fresh interpreter where those modules do not import."""

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pausecast.cli import COMMANDS
from pausecast.runs.store import load_results

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
MISSING = ("pyroute2", "libvirt", "numba")
PLANNERS = ("predict", "evacuate", "sweep", "plot", "report")
# runs `main(argv)` as on a base install, then writes its exit code and the modules it loaded to a file
PRELUDE = f"""
import json, sys
for name in {MISSING!r}:
    sys.modules[name] = None  # importing it fails, as on a base install
from pausecast.cli import main
report, argv = sys.argv[1], sys.argv[2:]
try:
    code = main(argv)
except SystemExit as exc:
    code = exc.code
with open(report, "w") as f:
    json.dump({{"code": code, "modules": [m for m, v in sys.modules.items() if v is not None]}}, f)
"""


def base_install(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess, int, list[str]]:
    """The finished process, main's exit code and the modules it loaded; run in `tmp_path`."""
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-c", PRELUDE, str(report), *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    result = json.loads(report.read_text())
    return done, result["code"], result["modules"]


def commands_loaded(modules: list[str]) -> list[str]:
    from pausecast.cli import COMMANDS

    command_modules = {f"pausecast.cli.{c.module}": c.module for c in COMMANDS}
    return sorted(command_modules[m] for m in modules if m in command_modules)


def assert_nothing_optional_loaded(modules: list[str]) -> None:
    assert [m for m in modules if m.startswith(("pausecast.executor", *MISSING))] == []


def test_the_planners_commands_need_no_extra():
    assert [c.name for c in COMMANDS if not c.extra] == list(PLANNERS)


def test_help_lists_every_command_without_importing_one(tmp_path):
    done, code, modules = base_install(tmp_path, "--help")
    assert code == 0
    for c in COMMANDS:
        assert c.name in done.stdout and c.help.split()[0] in done.stdout
    assert commands_loaded(modules) == []
    assert_nothing_optional_loaded(modules)


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_every_commands_help_is_the_full_one_without_the_extras(name, tmp_path):
    done, code, modules = base_install(tmp_path, name, "--help")
    assert code == 0
    with_extras = subprocess.run([sys.executable, "-m", "pausecast", name, "--help"], cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith(f"usage: pausecast {name}")
    assert done.stdout == with_extras.stdout
    assert commands_loaded(modules) == [name]
    assert [m for m in modules if m.startswith(MISSING)] == []


def test_predict_loads_neither_the_executor_nor_numba(tmp_path):
    done, code, modules = base_install(tmp_path, "predict", str(EXAMPLES / "busy-database.toml"))
    assert code == 0
    assert done.stdout.startswith("pausecast: busy-database (scenario ")
    assert "converged        yes" in done.stdout and "pause window" in done.stdout
    assert commands_loaded(modules) == ["predict"]
    assert_nothing_optional_loaded(modules)


def test_evacuate_loads_neither_the_executor_nor_numba(tmp_path):
    done, code, modules = base_install(tmp_path, "evacuate", str(EXAMPLES / "evacuation.toml"),
                                       "--results", str(tmp_path / "results"))
    assert code == 0
    assert "VMs              13: 13 migrated" in done.stdout
    assert (tmp_path / "results" / "rack-a-drain" / "records.parquet").is_file()
    assert commands_loaded(modules) == ["evacuate"]
    assert_nothing_optional_loaded(modules)


TINY_SWEEP = """
name = "tiny"
seed = 1
[base]
vm = { memory_mib = 1024 }
[[axes]]
field = "vm.dirty.rate_mib_s"
values = [10, 100, 400]
[[axes]]
field = "migration.max_downtime_ms"
values = [50, 300]
"""


def test_sweep_and_plot_run_in_the_simpy_engine_without_numba(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY_SWEEP)
    done, code, modules = base_install(tmp_path, "sweep", "tiny.toml", "--workers", "1", "--quiet",
                                       "--no-plots", "--results", "results")
    assert code == 0
    assert done.stdout.startswith("pausecast: sweep tiny: 6 runs (6 computed now)")
    [note] = done.stderr.splitlines()
    assert note.startswith("pausecast: numba not installed: sweeps run in the SimPy engine")
    root = tmp_path / "results" / "tiny"
    rows = load_results(root)
    assert len(rows) == 6 and set(rows["engine"]) == {"sim"}
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["fast_path"] is False
    assert commands_loaded(modules) == ["sweep"]
    assert_nothing_optional_loaded(modules)

    done, code, modules = base_install(tmp_path, "plot", "results/tiny", "--kind", "downtime-curves")
    assert code == 0
    assert (root / "plots" / "downtime-curves.png").is_file()
    assert commands_loaded(modules) == ["plot"]
    assert_nothing_optional_loaded(modules)


@pytest.mark.parametrize(("name", "args"), [
    ("run", [str(EXAMPLES / "testbed-small.toml"), "--testbed"]),
    ("validate", [str(EXAMPLES / "testbed-small.toml"), "--testbed"]),
    ("calibrate", ["--testbed"]),
    ("precheck", ["--testbed"]),
    ("testbed", ["up"]),
])
def test_the_executors_commands_say_in_one_line_what_to_install(name, args, tmp_path):
    done, code, modules = base_install(tmp_path, name, *args)
    assert code == 3  # targets.EXIT_CANNOT_RUN
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"pausecast: cannot run: 'pausecast {name}' needs the executor extra (")
    assert "libvirt" in line and line.endswith("): pip install 'pausecast[executor]'")
    assert commands_loaded(modules) == [name]


def test_version_names_the_package_and_the_commit_of_this_checkout(tmp_path):
    done, code, _ = base_install(tmp_path, "--version")
    assert code == 0
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    version = importlib.metadata.version("pausecast")
    assert re.fullmatch(rf"pausecast {re.escape(version)} \(git {head[:7]}(-dirty)?\)\n", done.stdout)
