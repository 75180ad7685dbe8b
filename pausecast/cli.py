"""The `pausecast` command. Each subcommand lives in its own `cmd_*` module with `register()`;
this module only wires them up and turns input errors into one line and a non-zero exit."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import (
    cmd_calibrate,
    cmd_evacuate,
    cmd_plot,
    cmd_precheck,
    cmd_predict,
    cmd_run,
    cmd_sweep,
    cmd_testbed,
    cmd_validate,
)
from .models.errors import ScenarioError

# exit codes: 0 success; 1 a verdict the caller asked about went the other way (e.g. no-go); 2 bad input
EXIT_BAD_INPUT = 2

COMMANDS = (cmd_predict, cmd_evacuate, cmd_sweep, cmd_plot, cmd_testbed, cmd_run, cmd_calibrate, cmd_validate,
            cmd_precheck)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pausecast",
        description="Predict, then measure, how long a VM is frozen when libvirt live-migrates it "
                    "(protocol v3: Begin, Prepare, Perform, Finish, Confirm).",
        epilog="Run 'pausecast COMMAND --help' for each command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ScenarioError as exc:
        print(f"pausecast: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("pausecast: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `pausecast ... | head`: the reader left; say nothing more
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout is closed at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
