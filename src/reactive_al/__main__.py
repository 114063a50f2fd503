"""Entry point of ``python -m reactive_al`` and of the ``reactive-al`` console script."""

from __future__ import annotations

import sys
from pathlib import Path

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project

USAGE = """\
reactive-al [kedro run options]        a campaign, exactly as `kedro run`
reactive-al run [kedro run options]    the same, spelled out
reactive-al benchmark --system <name> [--methods a,b] [--parallel N] [--report-only]
                                       query methods compared (reactive-al benchmark --help)
"""


def main(*args, **kwargs) -> object:
    """Dispatch a subcommand; without one (or with ``run``), run the Kedro CLI ``run`` command.

    Called without arguments (the console script), the command line is ``sys.argv`` (see
    :data:`USAGE`): a first word ``benchmark`` hands the rest to
    :func:`reactive_al.benchmark.main`, ``run`` is dropped, and anything else goes to
    ``kedro run`` unchanged (``--help`` lists the subcommands above ``kedro run``'s options).
    """
    argv = sys.argv[1:] if not args and "args" not in kwargs else None
    if argv and argv[0] == "benchmark":
        from reactive_al.benchmark import main as benchmark_main

        return benchmark_main(argv[1:], prog="reactive-al benchmark")
    if argv and argv[0] == "run":
        kwargs["args"] = argv[1:]
    elif argv and argv[0] in ("-h", "--help"):
        print(USAGE)
    package_name = Path(__file__).parent.name
    configure_project(package_name)
    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
