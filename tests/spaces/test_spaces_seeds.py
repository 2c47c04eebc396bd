"""Seeds build valid configs for any layer count, with the expert totals their patterns imply."""

import numpy as np
import pytest

from hilo_core import config_trainable
from hilo_core.config import MoLoRAConfig, RouterSpec
from hilo_core.proxies import alphalora_allocation
from spaces import SEED_NAMES, seed_config, seed_names
from spaces.params import layer_groups

LAYER_COUNTS = (6, 24, 30, 32)
PATTERNS = {"mola-2468": (2, 4, 6, 8), "mola-5555": (5, 5, 5, 5), "mola-8642": (8, 6, 4, 2), "mola-8228": (8, 2, 2, 8)}
# Hand-computed totals: quarters of 32 layers are 8 x 4; of 30 layers 8, 8, 7, 7; of 6 layers 2, 2, 1, 1.
TOTALS = {
    32: {"mola-2468": 160, "mola-5555": 160, "mola-8642": 160, "mola-8228": 160},
    30: {"mola-2468": 146, "mola-5555": 150, "mola-8642": 154, "mola-8228": 150},
    6: {"mola-2468": 26, "mola-5555": 30, "mola-8642": 34, "mola-8228": 30},
}


def quarter_of(n_layers):
    """Independent reference for the quarter split: numpy.array_split."""
    return [q for q, part in enumerate(np.array_split(np.arange(n_layers), 4)) for _ in part]


@pytest.mark.parametrize("n_layers", LAYER_COUNTS)
@pytest.mark.parametrize("name", SEED_NAMES)
def test_every_seed_builds_a_valid_config(name, n_layers, alphas_for):
    config = seed_config(name, n_layers=n_layers, layer_alphas=alphas_for(n_layers))
    assert isinstance(config, MoLoRAConfig) and config.n_layers == n_layers
    assert MoLoRAConfig.from_json(config.to_json()) == config
    quarter = quarter_of(n_layers)
    if name in PATTERNS:
        assert config.experts_per_layer == tuple(PATTERNS[name][q] for q in quarter)
        assert all(spec.ranks == (8,) * spec.n_experts for spec in config.layers)
        assert all(spec.router == RouterSpec(kind="topk", top_k=2) for spec in config.layers)
        if n_layers in TOTALS:
            assert config.total_experts == TOTALS[n_layers][name]
    elif name == "alphalora":
        alphas = alphas_for(n_layers)
        assert config.total_experts == 5 * n_layers
        assert config.experts_per_layer == alphalora_allocation(alphas, 5 * n_layers, 2.5, rounding="released")
        nearest = alphalora_allocation(alphas, 5 * n_layers, 2.5, rounding="nearest")
        assert list(nearest) == sorted(nearest)  # hilo's rounding follows the alphas, rising with depth
        for spec in config.layers:
            assert spec.ranks == (8,) * spec.n_experts
            assert spec.router.kind == "topk" and spec.router.top_k == min(2, spec.n_experts)
    elif name == "hilo-rule":
        assert config.experts_per_layer == tuple((2, 4, 6, 8)[q] for q in quarter)
        assert [spec.ranks[0] for spec in config.layers] == [(2, 4, 6, 8)[q] for q in quarter]
        assert {spec.router.kind for spec in config.layers} == {"topp"}
    else:
        assert config == MoLoRAConfig.uniform(n_layers, 4, 4)


def test_quarters_split_like_array_split():
    assert [len(g) for g in layer_groups(30, 4)] == [8, 8, 7, 7]
    assert [len(g) for g in layer_groups(6, 4)] == [2, 2, 1, 1]
    for n in range(4, 40):
        assert [len(g) for g in layer_groups(n, 4)] == [len(p) for p in np.array_split(np.arange(n), 4)]


def test_160_expert_seeds_match_the_papers_budget(alphas_for, llama7b_shapes):
    """Any 160-expert r=8 allocation on Llama-2-7B has about 105.6 M trainable (5.7 M of them routers)."""
    for name in ("mola-2468", "mola-5555", "alphalora"):
        config = seed_config(name, n_layers=32, layer_alphas=alphas_for(32))
        assert config_trainable(config, llama7b_shapes) == pytest.approx(105.6e6, rel=2e-3)


def test_seed_targets_follow_the_model():
    config = seed_config("uniform", n_layers=6, target_modules=("q_proj", "v_proj"))
    assert config.target_modules == ("q_proj", "v_proj")


def test_seed_errors_name_the_problem(alphas_for):
    with pytest.raises(ValueError, match="seed name must be one of .*'mola-1234'"):
        seed_config("mola-1234", n_layers=32)
    with pytest.raises(ValueError, match="layer_alphas"):
        seed_config("alphalora", n_layers=32)
    with pytest.raises(ValueError, match="n_layers must be >= 4"):
        seed_config("mola-2468", n_layers=3)
    assert seed_names(n_layers=3) == ("uniform",)
    assert "alphalora" not in seed_names(n_layers=32)
    assert "alphalora" in seed_names(n_layers=32, layer_alphas=alphas_for(32))


def test_unequal_mola_totals_are_said():
    from spaces.seeds import unequal_totals_note

    note = unequal_totals_note(30)
    assert note is not None and "\n" not in note
    for name, total in TOTALS[30].items():
        assert f"{name} {total}" in note
    assert unequal_totals_note(32) is None and unequal_totals_note(24) is None and unequal_totals_note(3) is None
