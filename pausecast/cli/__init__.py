"""The `pausecast` command. Each subcommand lives in its own module of this package whose `register(parser)`
fills in the parser and its handler; `COMMANDS` names them with their one-line help, so that
`pausecast --help` lists every command without importing one, and `pausecast CMD` imports only CMD's
module: a planner's command never loads the executor, and runs on an install without its extra. This
module also turns input errors into one line and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from ..models.errors import ScenarioError
from ..runs import provenance

# exit codes: 0 success; 1 a verdict the caller asked about went the other way (e.g. no-go); 2 bad input;
# 3 the command cannot run here (targets.EXIT_CANNOT_RUN)
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Command:
    name: str
    # the pausecast module with its register(parser)
    module: str
    help: str
    # the extra of pyproject.toml it cannot run without ("" = the base install is enough)
    extra: str = ""


COMMANDS = (
    Command("predict", "predict", "predict one live migration with the SimPy engine"),
    Command("evacuate", "evacuate",
            "predict a host evacuation: many migrations sharing links and a switch"),
    Command("sweep", "sweep", "run a what-if sweep: a base scenario or fleet over axes of values"),
    Command("plot", "plot", "draw the standard figures of a sweep's results"),
    Command("report", "report", "write one self-contained HTML page of a sweep, evacuation or validation"),
    Command("testbed", "testbed", "bring the local two-host libvirt testbed up or down, or show it",
            "executor"),
    Command("run", "run", "run a scenario as a real live migration and record it", "executor"),
    Command("calibrate", "calibrate",
            "measure the fixed costs of a migration and write an overheads profile", "executor"),
    Command("validate", "validate", "predict a scenario and run it for real; compare every figure",
            "executor"),
    Command("precheck", "precheck", "go / no-go for a real migration of a running domain", "executor"),
)
# the modules an extra installs that its commands import (pyproject.toml, project.optional-dependencies)
EXTRA_MODULES = {"executor": ("libvirt", "pyroute2")}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser listing every command; only `command` (a name in COMMANDS) gets its arguments, and
    only its module is imported."""
    parser = _OneLineErrors(
        prog="pausecast",
        description="Predict, then measure, how long a VM is frozen when libvirt live-migrates it "
                    "(protocol v3: Begin, Prepare, Perform, Finish, Confirm).",
        epilog="Run 'pausecast COMMAND --help' for each command's options.")
    parser.add_argument("--version", action=_PrintVersion)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for c in COMMANDS:
        p = sub.add_parser(c.name, help=c.help)
        if c.name == command:
            importlib.import_module(f".{c.module}", __package__).register(p)
    return parser


class _OneLineErrors(argparse.ArgumentParser):
    """argparse's refusals in pausecast's one-line form (usage and all on one line, exit code 2), as
    every other input error is: scripts and sweeps read a single line. Subcommands' parsers inherit
    it (add_subparsers makes its parsers of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"pausecast: error: {self.prog}: {message} (see '{self.prog} --help')\n")


class _PrintVersion(argparse.Action):
    """--version, worked out only when asked for (it runs git)."""

    def __init__(self, option_strings: Sequence[str], dest: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version, and the git commit when run from a checkout, and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(provenance.describe())
        parser.exit()


def _command_in(argv: Sequence[str]) -> Command | None:
    """The command `argv` names: its first word that is not an option (pausecast's own options take
    no value)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return next((c for c in COMMANDS if c.name == word), None)


def _missing_extra(command: Command) -> str:
    """Why `command` cannot run on this install ("" when it can): a module of its extra does not import."""
    for module in EXTRA_MODULES.get(command.extra, ()):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return (f"'pausecast {command.name}' needs the {command.extra} extra ({exc}): "
                    f"pip install 'pausecast[{command.extra}]'")
    return ""


class Terminated(Exception):
    """SIGTERM, raised in the main thread so that a command unwinds from it as from Ctrl-C: files are
    written whole or not at all, so what was written is kept."""


def _terminate_in(pid: int) -> Callable[[int, object], None]:
    """The SIGTERM handler of process `pid`. A child forked while a command runs (pyroute2 forks one
    to open a socket in another namespace, then ends it with SIGTERM) inherits the handler: there it
    does what SIGTERM does by default, so the child ends instead of unwinding a copy of the command."""
    def terminate(signum: int, _frame: object) -> None:
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated

    return terminate


def main(argv: Sequence[str] | None = None) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_in(os.getpid())) if in_main_thread else None
    try:
        return _main(argv)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    args = build_parser(command.name if command else None).parse_args(argv)
    # parse_args has exited unless argv named a command, so `command` is that one; its --help has been
    # shown (it needs no extra) and nothing has run yet
    missing = _missing_extra(command)
    if missing:
        from .targets import EXIT_CANNOT_RUN  # targets imports the executor: only its commands load it

        print(f"pausecast: cannot run: {missing}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    try:
        return int(args.handler(args) or 0)
    except ScenarioError as exc:
        print(f"pausecast: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("pausecast: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("pausecast: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        # `pausecast ... | head`: the reader left; say nothing more
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout is closed at exit
        return 0
    except UnicodeDecodeError as exc:
        # the readers of models/ say which file; this is for one that does not
        print(f"pausecast: error: an input is not UTF-8 text (byte {exc.start}: {exc.reason})",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        # a path the user gave (--results, --out) that cannot be written: theirs to fix, in one line
        if exc.filename is None:
            raise
        print(f"pausecast: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
