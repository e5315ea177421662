"""The ``calico-rr`` command: a thin adapter around the core.

It turns flags into a :class:`PlanConfig`, reads nodes (a file or the
synthetic generator), calls the pure core, and prints.  Bad input of any
kind is reported as one line on stderr with exit code 2, and nothing is written.

The commands live in one module per family (planning, operating, doctor, lab) and
register themselves on :data:`~calico_rr.cli.base.app`; the flags they share are
declared once in :mod:`calico_rr.cli.base`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

# isort: off
# registration order is the order of `calico-rr --help`
from calico_rr.cli import planning, diff, operating, doctor, lab

# isort: on
from calico_rr.cli.base import EXIT_BAD_INPUT, app

#: The console script kubectl finds for ``kubectl calico-rr`` (a dash in a plugin's
#: name is an underscore in its file name).
PLUGIN = "kubectl-calico_rr"

__all__ = [
    "app",
    "diff",
    "doctor",
    "lab",
    "main",
    "operating",
    "planning",
]


def main() -> None:
    """The console script.  Like ``app()``, except that a usage error (an unknown
    flag, a value of the wrong type) is one line on stderr, exit code 2, instead of
    click's framed box: scripts and people both read one line (issue 14)."""
    args = sys.argv[1:]
    # run by kubectl as a plugin (kubectl-calico_rr): usage lines say what was typed
    prog = "kubectl calico-rr" if Path(sys.argv[0]).name == PLUGIN else "calico-rr"
    if not args:
        app(prog_name=prog)  # no_args_is_help: the help text, as typer prints it
        return
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name=prog, standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:  # click's UsageError, BadParameter, NoSuchOption
        ctx = getattr(exc, "ctx", None)
        path = ctx.command_path if ctx is not None else prog
        text = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
        sys.stderr.write(f"calico-rr: error: {text} (see '{path} --help')\n")
        sys.exit(int(getattr(exc, "exit_code", EXIT_BAD_INPUT)))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
