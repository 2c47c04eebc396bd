import math

import pytest

from objectives import DIRECTIONS, Fidelity, Metrics


def _metrics(**overrides):
    values = dict(accuracy=0.5, trainable_params=1000, active_params=250.0, train_seconds=1.0,
                  tokens_per_second=10.0, peak_memory=1, steps=3)
    return Metrics(**{**values, **overrides})


def test_directions_are_the_objectives_in_order():
    assert list(DIRECTIONS.items()) == [("accuracy", "maximize"), ("score", "maximize"), ("loss", "minimize"),
                                        ("trainable", "minimize"), ("active", "minimize")]


def test_values_follow_the_names_given_and_default_to_directions_order():
    m = _metrics()
    assert m.values(["accuracy", "trainable", "active"]) == (0.5, 1000.0, 250.0)
    assert m.values(["active", "accuracy"]) == (250.0, 0.5)
    with pytest.raises(ValueError, match="unknown objective names \\['nll'\\]"):
        m.values(["nll"])


def test_metrics_round_trip_through_a_dict():
    m = _metrics(test_accuracy=0.25, final_loss=1.5)
    assert Metrics.from_dict(m.to_dict()) == m
    with pytest.raises(ValueError, match="unknown keys \\['bogus'\\]"):
        Metrics.from_dict({**m.to_dict(), "bogus": 1})


@pytest.mark.parametrize("field, value", [
    ("steps", 0), ("batch_size", True), ("grad_accum", 1.5), ("lr", 0.0), ("lr", math.nan),
    ("router_lr", math.inf), ("aux_weight", -0.1), ("eval_every", -1), ("max_test_examples", -1),
    ("max_length", 1),
])
def test_fidelity_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"Fidelity.{field} must"):
        Fidelity(**{field: value})


def test_fidelity_defaults_are_valid_and_serialisable():
    assert Fidelity(**Fidelity().to_dict()) == Fidelity()
