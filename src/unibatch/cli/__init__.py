"""The ``unibatch`` command line (argparse); sub-commands live in their own modules."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    from unibatch.cli import demo

    parser = argparse.ArgumentParser(prog="unibatch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command given by ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    arguments = build_parser().parse_args(argv)
    return int(arguments.run(arguments) or 0)
