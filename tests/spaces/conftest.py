"""Shared fixtures for the spaces tests: a fixed alpha profile, Llama-2-7B linear shapes, quiet Optuna."""

import optuna
import pytest


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def alphas_for():
    """Alphas rising gently with depth, so AlphaLoRA's allocation stays within 1..8 experts per layer."""
    return lambda n_layers: [2.0 + 0.5 * i / n_layers for i in range(n_layers)]


@pytest.fixture
def llama7b_shapes():
    """Llama-2-7B ``(d_in, d_out)`` per adapted linear."""
    return {
        "q_proj": (4096, 4096), "k_proj": (4096, 4096), "v_proj": (4096, 4096), "o_proj": (4096, 4096),
        "gate_proj": (4096, 11008), "up_proj": (4096, 11008), "down_proj": (11008, 4096),
    }
