"""Shared fixtures: tiny in-code models (see tiny_models.py) and the tiny search task."""

import pytest

from tiny_models import COLOUR_WORDS, save_tiny_causal_lm, tiny_llama, write_colours_task


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
