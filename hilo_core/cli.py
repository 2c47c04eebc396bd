"""Shared command-line plumbing: an argparse parser whose usage errors are one line, like every other error."""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """``ArgumentParser`` that reports a usage error as ``<module>: <problem> (see --help)`` and exits 2.

    argparse prints the whole usage block first; the CLIs promise one line per error, so scripts and log
    greps see the same shape whether argparse or our own validation refused the input.
    """

    def error(self, message: str) -> NoReturn:
        name = self.prog.removeprefix("python -m ").strip()
        self.exit(2, f"{name}: {' '.join(message.split())} (see --help)\n")

