"""A tiny model folder and a small multiple-choice task file, shared by the search tests."""

import pytest

from tiny_models import COLOUR_WORDS, save_tiny_causal_lm, write_colours_task


@pytest.fixture(scope="session")
def task_file(tmp_path_factory):
    """Learnable: 'the colour of X is' -> the colour paired with X, among 3 distractors."""
    return write_colours_task(tmp_path_factory.mktemp("task") / "colours.jsonl")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("model") / "tiny", COLOUR_WORDS, n_layers=4)
