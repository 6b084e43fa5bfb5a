"""`medregionct`: the command-line entry point.

Each sub-command lives in its own module of this package with two functions, ``add_parser(subparsers)``
and ``run(args) -> int``; register new ones in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..errors import MedRegionCTError

# sub-command name -> module in this package (imported lazily so `--help` stays fast and torch-free)
COMMANDS = {
    "demo": "demo",
    "info": "info",
    "segment": "segment",
    "measure": "measure",
    "report": "report",
    "batch": "batch",
    "cohort": "cohort",
    "evaluate": "evaluate",
    "train": "train",
    "serve": "serve",
    "import-reg2rg": "import_reg2rg",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medregionct",
        description="Region-by-region chest CT reports: segment a chest CT into anatomical regions, "
                    "measure each one and write one paragraph per region.",
        epilog="Run `medregionct COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        module = importlib.import_module(f"{__package__}.{module_name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, so a closed pipe (`| head`) is caught below, not at interpreter exit
        return code
    except MedRegionCTError as error:
        print(f"medregionct {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"medregionct {args.command}: interrupted; completed results were kept and nothing half-written "
              "was left.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`medregionct info ... | head`): stop quietly, like `cat` does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
