"""The shared phase model: what a libvirt live migration is, independent of who runs it.

Pure Python (and numpy): this package imports neither simpy nor libvirt, so the simulator, the real
executor, sweeps and reports all share one definition of a scenario, of the pre-copy switchover rule and
of the result record.
"""

from .errors import ScenarioError
from .files import load_scenario, scenario_from_dict
from .record import MigrationRecord
from .scenario import Scenario

__all__ = ["MigrationRecord", "Scenario", "ScenarioError", "load_scenario", "scenario_from_dict"]
