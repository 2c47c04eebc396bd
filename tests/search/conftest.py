"""A tiny model folder and a small multiple-choice task file, shared by the search tests."""

import json
import random

import pytest

from tiny_models import save_tiny_causal_lm

COLOURS = ["red", "green", "blue", "black", "white", "pink", "grey", "brown"]
THINGS = ["apple", "leaf", "sky", "coal", "snow", "rose", "ash", "bark"]


@pytest.fixture(scope="session")
def task_file(tmp_path_factory):
    """Learnable: 'the colour of X is' -> the colour paired with X, among 3 distractors."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("task") / "colours.jsonl"
    rows = []
    for i in range(64):
        k = i % len(THINGS)
        choices = rng.sample([c for c in COLOURS if c != COLOURS[k]], 3) + [COLOURS[k]]
        rng.shuffle(choices)
        rows.append({"question": f"q{i} the colour of {THINGS[k]} is", "choices": choices, "answer": COLOURS[k]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    words = COLOURS + THINGS + ["the", "colour", "of", "is"] + [f"q{i}" for i in range(64)]
    return save_tiny_causal_lm(tmp_path_factory.mktemp("model") / "tiny", words, n_layers=4)
