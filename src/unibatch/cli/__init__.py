"""The ``unibatch`` command line (argparse); sub-commands live in their own modules.

Exit codes: 0 success, 1 ``verify`` found an inconsistency, 2 a usage error or a PATH that cannot
be read (the message on stderr says why). Output goes to stdout, errors and progress to stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from unibatch.errors import MissingDependencyError

USAGE_ERROR = 2
DESCRIPTION = "Inspect, check, convert and look at unibatch buffers and robot-learning datasets."
EPILOG = "Exit codes: 0 success, 1 verify found a problem, 2 usage error or unreadable PATH."


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (rows per chunk, capacities)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    from unibatch.cli import convert, demo, info, show, verify

    parser = argparse.ArgumentParser(prog="unibatch", description=DESCRIPTION, epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (info, verify, convert, show, demo):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command given by ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    from unibatch.cli._open import PathNotRecognizedError, SourceOpenError, UsageError

    try:
        arguments = build_parser().parse_args(argv)
    except SystemExit as exit_request:  # --help, or argparse's own usage errors (code 2)
        return exit_request.code if isinstance(exit_request.code, int) else USAGE_ERROR
    try:
        code = int(arguments.run(arguments) or 0)
        sys.stdout.flush()  # inside the try: a reader that went away is seen here, not at interpreter exit
        return code
    except BrokenPipeError:
        return reader_went_away()
    except (PathNotRecognizedError, SourceOpenError, UsageError, MissingDependencyError) as error:
        print(f"unibatch {arguments.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR


def reader_went_away() -> int:
    """Stop quietly when stdout's reader closed the pipe (``unibatch info --json PATH | head``), as Unix tools do.

    stdout is pointed at ``/dev/null`` so that Python's own flush at exit cannot fail again; the exit code is
    the shell's for a process ended by SIGPIPE (141).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE
