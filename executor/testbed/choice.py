"""Which testbed a scenario runs on: the plain one, or one with the port profile its [port_profile]
names, 802.1Qbg (qbg.py: lldpad and the VDP emulator) or 802.1Qbh (qbh.py: the emulated VIC)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...models.errors import ScenarioError
from ...models.scenario import Scenario
from .hosts import Testbed
from .qbg import VdpTestbed
from .qbh import QbhTestbed

_KINDS: dict[str, type[VdpTestbed]] = {cls.nic_port: cls for cls in (VdpTestbed, QbhTestbed)}


def port_of(state_dir: Path) -> str:
    """The port profile the testbed in `state_dir` was brought up for ("none": the plain testbed)."""
    return next((port for port, cls in _KINDS.items() if (Path(state_dir) / cls.switch_folder).is_dir()),
                "none")


def _testbed(port: str, state_dir: Path, **config: Any) -> Testbed:
    return _KINDS[port](state_dir=state_dir, **config) if port in _KINDS else \
        Testbed(state_dir=state_dir, **{k: v for k, v in config.items() if k != "switch"})


def testbed_for(state_dir: Path, scenario: Scenario | None = None, **config: Any) -> Testbed:
    """The testbed in `state_dir` for running `scenario`: with the switch playing its [switch] when its
    [port_profile] has a type, plain otherwise. One that is already up must be of that kind (a
    prediction and a measurement must describe the same NIC); an up switch playing another [switch]
    is restarted as the scenario's. Without a scenario: whatever is up there."""
    state_dir = Path(state_dir)
    if scenario is None:
        return _testbed(port_of(state_dir), state_dir, **config)
    port = scenario.port_profile
    if port.type != "none" and port.vnics != 1:
        raise ScenarioError("port_profile.vnics", port.vnics, "1 on the testbed (its guest has one NIC)")
    tb = _testbed(port.type, state_dir, switch=scenario.switch, **config)
    if tb.is_up() and port_of(state_dir) != port.type:
        have = port_of(state_dir)
        raise ScenarioError("port_profile.type", port.type,
                            f"what the testbed in {state_dir} was brought up for: it runs with port profile "
                            f"{have}; 'pausecast testbed down' it first, or change the scenario")
    tb.play_switch(scenario.switch)
    return tb
