"""Where a real migration runs, as the commands `run`, `validate` and `calibrate` take it: the local
testbed (`--testbed`), or two libvirt daemons and a running domain (`--src URI --dst URI --domain`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..executor.migration.jobinfo import JobInfo
from ..executor.migration.migrate import GIVE_UP_S, Endpoints, ExecutorError, Measurement, migrate
from ..executor.testbed.choice import testbed_for
from ..executor.testbed.hosts import DEFAULT_STATE_DIR, Testbed
from ..executor.testbed.run import run_on_testbed, shape_for
from ..models.errors import ScenarioError
from ..models.scenario import Scenario


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "where to migrate (one of --testbed or --src/--dst/--domain)",
        "On real hosts every measured run migrates --domain from --src to --dst. When there are several "
        "runs (--repeat), the domain is migrated back from --dst to --src between them (unmeasured, at "
        "unlimited bandwidth, in the scenario's mode: peer-to-peer through --p2p-src), and after the "
        "last run it stays on --dst; each run's record names its direction (extra.direction) and the "
        "command's last line says where the domain is.")
    g.add_argument("--testbed", action="store_true",
                   help="the local two-host testbed (brought up if it is down, and left up; "
                        "'pausecast testbed down' removes it); the test guest stands for the VM")
    g.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), metavar="DIR",
                   help=f"the testbed's state directory (default {DEFAULT_STATE_DIR})")
    g.add_argument("--src", metavar="URI", help="source libvirt URI, e.g. qemu+ssh://host-a/system")
    g.add_argument("--dst", metavar="URI", help="destination libvirt URI, as this machine reaches it")
    g.add_argument("--domain", metavar="NAME", help="the running domain to migrate (on --src)")
    g.add_argument("--p2p-dst", metavar="URI", default="",
                   help="the destination as the source daemon reaches it (peer-to-peer; default --dst)")
    g.add_argument("--migrate-uri", metavar="URI", default="",
                   help="where QEMU sends the stream, e.g. tcp://10.0.0.2 (default: the destination's "
                        "choice)")
    g.add_argument("--p2p-src", metavar="URI", default="",
                   help="the source as the destination daemon reaches it, for migrating back between "
                        "runs (peer-to-peer; default --src)")
    g.add_argument("--migrate-back-uri", metavar="URI", default="",
                   help="where QEMU sends the stream when migrating back (default: the source's choice)")
    g.add_argument("--src-log", metavar="PATH", default="",
                   help="the source libvirtd's debug log, to read the phases from (see README)")
    g.add_argument("--dst-log", metavar="PATH", default="", help="the destination libvirtd's debug log")
    g.add_argument("--give-up-s", type=float, default=GIVE_UP_S, metavar="S",
                   help=f"without a scenario timeout, abort a pre-copy still running after S seconds and "
                        f"record it as not converging (default {GIVE_UP_S:g})")


@dataclass
class Target:
    """Runs scenarios on one place; `describe` says where, for the reports."""

    args: argparse.Namespace
    testbed: Testbed | None = None
    # real hosts: a run has moved the domain to the destination
    moved: bool = False

    @property
    def describe(self) -> str:
        if self.testbed is not None:
            return f"testbed {self.testbed.state_dir} ({self.testbed.virt_type})"
        return f"{self.args.src} -> {self.args.dst}, domain {self.args.domain}"

    def say_where_the_domain_is(self, stream: TextIO | None = None) -> None:
        """A command's last line on real hosts (the testbed's guest lives for one run only), on stdout
        unless `stream` says otherwise."""
        if self.testbed is None:
            a = self.args
            where = a.dst if self.moved else a.src
            print(f"  domain {a.domain} is now on {where}", file=stream or sys.stdout)

    def run(self, scenario: Scenario,
            on_sample: Callable[[float, JobInfo], None] | None = None) -> Measurement:
        if self.testbed is not None:
            return run_on_testbed(self.testbed, scenario, on_sample=on_sample, give_up_s=self.args.give_up_s)
        if self.moved:
            self._migrate_back(scenario)
        m = migrate(scenario, self._endpoints(), self.args.domain, on_sample=on_sample,
                    give_up_s=self.args.give_up_s)
        self.moved = m.record.migrated
        return m

    def _endpoints(self, back: bool = False) -> Endpoints:
        a = self.args
        if back:
            return Endpoints(src_uri=a.dst, dst_uri=a.src, p2p_dst_uri=a.p2p_src,
                             migrate_uri=a.migrate_back_uri, src_log=a.dst_log, dst_log=a.src_log)
        return Endpoints(src_uri=a.src, dst_uri=a.dst, p2p_dst_uri=a.p2p_dst, migrate_uri=a.migrate_uri,
                         src_log=a.src_log, dst_log=a.dst_log)

    def _migrate_back(self, scenario: Scenario) -> None:
        """Moves the domain back to the source for the next run: the scenario's mode and flags, no cap,
        no timeout, so that a busy guest comes back too."""
        a = self.args
        print(f"pausecast: migrating {a.domain} back to {a.src} for the next run", file=sys.stderr)
        way_back = scenario.replace(migration=dataclasses.replace(scenario.migration, bandwidth_mib_s=0.0,
                                                                  timeout_s=0.0))
        back = migrate(way_back, self._endpoints(back=True), a.domain, give_up_s=a.give_up_s)
        if not back.record.migrated:
            raise ExecutorError(f"domain {a.domain!r} stays on {a.dst}: migrating it back to {a.src} for "
                                f"the next run failed ({back.record.failure})")
        self.moved = False


def open_target(args: argparse.Namespace, scenario: Scenario | None = None) -> Target:
    """The target the arguments name. With --testbed, brings the testbed up if it is down, its link
    shaped for `scenario`."""
    real = [args.src, args.dst, args.domain]
    if args.testbed == any(real):
        raise ScenarioError("target", "--testbed" if args.testbed else "none",
                            "give either --testbed or all of --src, --dst and --domain")
    if not args.testbed:
        if not all(real):
            raise ScenarioError("target", " ".join(a or "-" for a in real), "give --src, --dst and --domain")
        return Target(args)
    tb = testbed_for(Path(args.state_dir), scenario)
    if not tb.is_up():
        print(f"pausecast: bringing the testbed up in {tb.state_dir} (it stays up; "
              "'pausecast testbed down' removes it)", file=sys.stderr)
        tb.up()
        if scenario is not None:
            shape_for(tb, scenario)
    return Target(args, tb)


# exit code when the migration could not be attempted (testbed, daemon or domain missing)
EXIT_CANNOT_RUN = 3


Handler = Callable[[argparse.Namespace], int]


def cannot_run_is_one_line(handler: Handler) -> Handler:
    """A command handler whose environment failures (no testbed, no daemon, no domain, no libvirt
    module) print as one line with EXIT_CANNOT_RUN instead of a traceback."""
    from ..analysis.calibration import CalibrationError
    from ..executor.migration.migrate import ExecutorError
    from ..executor.testbed.guest_build import GuestBuildError
    from ..executor.testbed.hosts import TestbedError

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (ExecutorError, TestbedError, GuestBuildError, CalibrationError, ImportError) as exc:
            print(f"pausecast: cannot run: {exc}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        except Exception as exc:
            if type(exc).__name__ != "libvirtError":
                raise
            print(f"pausecast: cannot run: libvirt: {exc}", file=sys.stderr)
            return EXIT_CANNOT_RUN

    return wrapped
