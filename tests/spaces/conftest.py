"""Keep Optuna's per-trial log lines out of the spaces tests' output."""

import optuna
import pytest


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
