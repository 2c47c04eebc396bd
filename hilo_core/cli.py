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


def quiet_hub_logs() -> None:
    """Keep Hugging Face's download retries and progress bars off stderr, where an error must stay one line.

    Loading an id with no network logs "Retrying in 1s" five times before failing; the CLI then names the
    failure itself (``hilo_core.models.load_model`` says what to use instead).
    """
    from huggingface_hub.utils import disable_progress_bars
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as hf_logging

    hub_logging.set_verbosity_error()
    hf_logging.set_verbosity_error()
    disable_progress_bars()
    hf_logging.disable_progress_bar()


class OneLineParser(argparse.ArgumentParser):
    """``ArgumentParser`` that reports a usage error as ``<module>: <problem> (see --help)`` and exits 2.

    argparse prints the whole usage block first; the CLIs promise one line per error, so scripts and log
    greps see the same shape whether argparse or our own validation refused the input.
    """

    def error(self, message: str) -> NoReturn:
        print_error(self.prog.removeprefix("python -m ").strip(), f"{message} (see --help)")
        self.exit(2)

