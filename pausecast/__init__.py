"""pausecast: predict, then measure, how long a VM is frozen when libvirt live-migrates it.

`pausecast.models` defines scenarios, the phase model and the result record; `pausecast.sim` predicts;
`pausecast.executor` runs real migrations; this package holds the command line and the reports.
"""

from importlib.resources import files

from .models import MigrationRecord, Scenario, ScenarioError, load_scenario
from .sim import predict, simulate

__version__ = "0.1.0"


def default_scenario_path():
    return files(__package__) / "data" / "default.toml"


__all__ = ["MigrationRecord", "Scenario", "ScenarioError", "default_scenario_path", "load_scenario",
           "predict", "simulate"]
