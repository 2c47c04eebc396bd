"""Shared command-line plumbing: every CLI error is one line ``<module>: <problem>`` on stderr, exit code 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


def one_line(message: object) -> str:
    """``message`` with every run of white space, newlines included, folded to one space."""
    return " ".join(str(message).split())


def print_error(module: str, message: object) -> None:
    """The CLIs' error shape: ``<module>: <problem>`` as one line on stderr (multi-line library messages folded)."""
    print(f"{module}: {one_line(message)}", file=sys.stderr)


class OneLineParser(argparse.ArgumentParser):
    """``ArgumentParser`` that reports a usage error as ``<module>: <problem> (see --help)`` and exits 2.

    argparse prints the whole usage block first; the CLIs promise one line per error, so scripts and log
    greps see the same shape whether argparse or our own validation refused the input.
    """

    def error(self, message: str) -> NoReturn:
        print_error(self.prog.removeprefix("python -m ").strip(), f"{message} (see --help)")
        self.exit(2)

