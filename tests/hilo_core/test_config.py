"""MoLoRAConfig validation names the field and value; JSON round trips exactly."""

import json

import pytest

from hilo_core import LayerSpec, MoLoRAConfig, RouterSpec


def test_json_round_trip_heterogeneous():
    layers = (
        LayerSpec(ranks=(2, 8, 4, 16, 1), router=RouterSpec(kind="topk", top_k=3)),
        LayerSpec(ranks=(4,), router=RouterSpec(kind="dense")),
        LayerSpec(ranks=(2, 2, 6), router=RouterSpec(kind="threshold", tau_max=0.2)),
        LayerSpec(ranks=(8, 8), router=RouterSpec(kind="topp", top_p=0.6), disabled=True),
    )
    config = MoLoRAConfig(layers=layers, target_modules=("q_proj", "v_proj"), lora_alpha=32.0, lora_dropout=0.1)
    again = MoLoRAConfig.from_json(config.to_json())
    assert again == config
    assert again.to_json() == config.to_json()
    assert json.loads(config.to_json())["layers"][0]["ranks"] == [2, 8, 4, 16, 1]


def test_uniform_and_from_experts():
    config = MoLoRAConfig.uniform(30, 4, 8)
    assert config.n_layers == 30 and config.total_experts == 120
    assert all(s.ranks == (8, 8, 8, 8) and s.router.top_k == 2 for s in config.layers)
    mola = MoLoRAConfig.from_experts([1, 2, 4], 8)
    assert mola.experts_per_layer == (1, 2, 4)
    assert mola.layers[0].router.top_k == 1  # clamped to the expert count


@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: LayerSpec(ranks=(4, 0)), ["ranks", "(4, 0)"]),
        (lambda: LayerSpec(ranks=()), ["ranks", "()"]),
        (lambda: LayerSpec(ranks=(4, -2)), ["ranks", "-2"]),
        (lambda: LayerSpec(ranks=(2, 2), router=RouterSpec(kind="topk", top_k=3)), ["top_k", "3"]),
        (lambda: RouterSpec(kind="threshold", tau_max=1.5), ["tau_max", "1.5"]),
        (lambda: RouterSpec(kind="threshold", tau_max=0.0), ["tau_max", "0.0"]),
        (lambda: LayerSpec(ranks=(2, 2, 2), router=RouterSpec(kind="threshold", tau_max=0.5)), ["tau_max", "1/N"]),
        (lambda: RouterSpec(kind="switch"), ["kind", "switch"]),
        (lambda: RouterSpec(kind="topp", top_p=1.2), ["top_p", "1.2"]),
        (lambda: MoLoRAConfig(layers=()), ["layers"]),
        (lambda: MoLoRAConfig.uniform(2, 2, 4, lora_alpha=-1), ["lora_alpha", "-1"]),
        (lambda: MoLoRAConfig.uniform(2, 2, 4, lora_dropout=1.0), ["lora_dropout", "1.0"]),
        (lambda: MoLoRAConfig.uniform(2, 2, 4, target_modules=("q_proj", "q_proj")), ["target_modules", "q_proj"]),
        (lambda: MoLoRAConfig.uniform(0, 2, 4), ["n_layers", "0"]),
    ],
)
def test_bad_values_name_field_and_value(build, words):
    with pytest.raises(ValueError) as err:
        build()
    for word in words:
        assert word in str(err.value)


def test_from_dict_names_the_layer_and_unknown_keys():
    data = MoLoRAConfig.uniform(3, 2, 4).to_dict()
    data["layers"][1]["ranks"] = [4, 0]
    with pytest.raises(ValueError, match=r"layer 1: ranks must be positive integers, got \(4, 0\)"):
        MoLoRAConfig.from_dict(data)
    data = MoLoRAConfig.uniform(1, 2, 4).to_dict()
    data["layers"][0]["router"]["topk"] = 2
    with pytest.raises(ValueError, match="unknown keys"):
        MoLoRAConfig.from_dict(data)
    with pytest.raises(ValueError, match="malformed"):
        MoLoRAConfig.from_json("{not json")
