"""Shared fixtures: tiny in-code models (see tiny_models.py) and the tiny search task; Triton's CPU interpreter."""

import os

import pytest
import torch

# Triton reads TRITON_INTERPRET when a module defines its @triton.jit functions; whichever test module imports
# hilo_core.kernels first, the kernels must be built for the interpreter on a machine without CUDA.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tiny_models import COLOUR_WORDS, save_tiny_causal_lm, tiny_llama, write_colours_task  # noqa: E402


@pytest.fixture
def llama():
    return tiny_llama()


@pytest.fixture(scope="session")
def task_file(tmp_path_factory):
    """Learnable: 'the colour of X is' -> the colour paired with X, among 3 distractors."""
    return write_colours_task(tmp_path_factory.mktemp("task") / "colours.jsonl")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 4-layer tiny Llama saved as an HF folder, with the colour words in its vocabulary."""
    return save_tiny_causal_lm(tmp_path_factory.mktemp("model") / "tiny", COLOUR_WORDS, n_layers=4)
