"""The command line as a user meets it: output, JSON, one-line errors with a non-zero exit."""

import importlib.metadata
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import pausecast
from pausecast.cli import main
from pausecast.models.record import REQUIRED_COLUMNS
from pausecast.runs import provenance

from .test_bounds import EXAMPLES
from .test_scenario import SINGLE_VM_EXAMPLES


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pausecast", *args], capture_output=True, text=True,
                          timeout=120)


def test_predict_default_shows_convergence_times_and_the_pause_breakdown(capsys):
    assert main(["predict"]) == 0
    out = capsys.readouterr().out
    for needle in ("converged        yes, after 5 iterations", "pause window", "final copy", "Finish work",
                   "association", "resume", "network outage", "phase timeline", "confirm"):
        assert needle in out


def test_predict_shows_the_streams_rates_where_a_sender_or_final_copy_figure_sets_them(capsys):
    # 1000 Mbit/s x 0.955 = 113.8 MiB/s, a 60 MiB/s sender, a 32 MiB/s cap: live min(113.8, 60, 32);
    # the stop-and-copy uncapped, min(1000 Mbit/s x 0.85 = 101.3 MiB/s, 60)
    assert main(["predict", str(EXAMPLES / "testbed-small.toml"), "--set", "link.sender_mib_s=60",
                 "--set", "link.final_copy_efficiency=0.85"]) == 0
    assert "stream live 32 MiB/s, stop-and-copy 60 MiB/s" in capsys.readouterr().out
    assert main(["predict", str(EXAMPLES / "testbed-small.toml")]) == 0
    assert "stream live" not in capsys.readouterr().out


def test_predict_json_is_the_record(capsys):
    assert main(["predict", "--json", "--events", "--set", "vm.dirty.rate_mib_s=2000"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert set(REQUIRED_COLUMNS) <= set(row)
    assert row["failure"] == "not-converged"
    assert row["total_time_s"] is None  # never: strict JSON has no infinity
    assert row["events"][0][2] == "begin start"


@pytest.mark.parametrize("path", SINGLE_VM_EXAMPLES, ids=lambda p: p.name)
def test_every_example_predicts(path, capsys):
    assert main(["predict", str(path), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["scenario_name"] == path.stem
    assert row["failure"] == "" and math.isfinite(row["total_time_s"])


@pytest.mark.parametrize(("args", "needle"), [
    (["predict", "--set", "vm.memory_mib=-1"], "vm.memory_mib = -1.0: allowed range (0, inf)"),
    (["predict", "--set", "link.speed=10"], "link.speed = 10: unknown key; valid keys: bandwidth_mbit_s"),
    (["predict", "--set", "migration.switchover_rule=fast"], "allowed: qemu | pass-end"),
    (["predict", "/no/such/file.toml"], "cannot be read"),
    # argparse's own refusals: a value that looks like an option, an unknown command
    (["predict", "--set", "-x"], "argument --set: expected one argument"),
    (["nosuch"], "invalid choice: 'nosuch'"),
])
def test_bad_input_is_one_line_and_exit_2_without_traceback(args, needle):
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pausecast: error: ")
    assert needle in lines[0]


def test_invalid_toml_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[vm\nmemory_mib = 4\n")
    done = run_cli("predict", str(bad))
    assert done.returncode == 2 and "not valid TOML" in done.stderr and "Traceback" not in done.stderr


def test_help_explains_the_command():
    done = run_cli("predict", "--help")
    assert done.returncode == 0
    assert "pause window" in done.stdout and "--set" in done.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "pausecast"
    assert script.exists()
    done = subprocess.run([str(script), "predict", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["converged"] is True


def test_version_outside_a_checkout_is_the_version_alone(tmp_path, monkeypatch):
    outside = provenance.git_state(tmp_path)
    assert outside == {"commit": None, "dirty": None}
    monkeypatch.setattr(provenance, "git_state", lambda: outside)
    assert provenance.describe() == f"pausecast {importlib.metadata.version('pausecast')}"


def test_an_installed_copy_inside_a_checkout_claims_no_commit(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "a project with a venv in it"], check=True)
    site_packages = tmp_path / ".venv" / "lib" / "site-packages"
    site_packages.mkdir(parents=True)
    assert provenance.git_state(site_packages) == {"commit": None, "dirty": None}
    assert provenance.git_state(tmp_path)["commit"]


def test_version_of_a_tree_never_installed_is_the_packages_own(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert provenance.package_version() == pausecast.__version__


def test_a_child_forked_during_a_command_dies_of_sigterm_as_by_default():
    # pyroute2 forks a child to open a socket in another namespace and ends it with SIGTERM; the
    # command's handler (raise, then unwind as Ctrl-C does) must not run in that child
    import os
    import signal
    import time

    from pausecast.cli import _terminate_in

    previous = signal.signal(signal.SIGTERM, _terminate_in(os.getpid()))
    try:
        child = os.fork()
        if child == 0:
            try:
                time.sleep(30)
            finally:
                os._exit(0)  # reached only if the signal was turned into an exception
        time.sleep(0.2)
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
