"""Sampling: deterministic under a fixed sampler seed, always a valid config, monotone by construction."""

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hilo_core.config import MoLoRAConfig
from spaces import GroupedSpace, get_space

SPACES = [
    ("uniform", {}), ("mola", {}), ("alphalora", {}), ("hilo", {}), ("free", {}),
    ("hilo", {"monotone": True, "rank_ladder": (1, 2, 4), "groups": 3}),
]


def build(name, options, alphas_for, n_layers=30):
    return get_space(name, n_layers=n_layers, layer_alphas=alphas_for(n_layers), **options)


def run(space, sampler, n_trials):
    study = optuna.create_study(sampler=sampler)
    configs = []

    def objective(trial):
        config = space.sample(trial)
        configs.append(config)
        return sum(spec.total_rank for spec in config.layers)

    study.optimize(objective, n_trials=n_trials)
    return configs


@pytest.mark.parametrize("name,options", SPACES)
def test_fixed_sampler_seed_gives_the_same_configs(name, options, alphas_for):
    space = build(name, options, alphas_for)
    first = run(space, optuna.samplers.TPESampler(seed=7, n_startup_trials=4), 10)
    again = run(space, optuna.samplers.TPESampler(seed=7, n_startup_trials=4), 10)
    other = run(space, optuna.samplers.TPESampler(seed=8, n_startup_trials=4), 10)
    assert first == again
    assert first != other  # the seed matters, so equality above is not vacuous


@pytest.mark.parametrize("name,options", SPACES)
def test_every_sampled_config_validates_and_stays_on_its_grids(name, options, alphas_for):
    space = build(name, options, alphas_for)
    for config in run(space, optuna.samplers.RandomSampler(seed=0), 40):
        assert isinstance(config, MoLoRAConfig) and config.n_layers == 30
        assert MoLoRAConfig.from_json(config.to_json()) == config
        for i, spec in enumerate(config.layers):
            if isinstance(space, GroupedSpace):
                g = next(g for g, layers in enumerate(space.groups) if i in layers)
                assert spec.n_experts in space.n_experts[g] and max(spec.ranks) in space.rank[g]
            assert spec.router.kind in space.routers
            if spec.router.kind == "topk":
                assert spec.router.top_k <= spec.n_experts


def test_groups_that_do_not_divide_the_layers():
    space = get_space("hilo", n_layers=6, groups=4)
    assert [list(g) for g in space.groups] == [[0, 1], [2, 3], [4], [5]]
    trial = optuna.trial.FixedTrial({
        "group.0.n_experts": 1, "group.1.n_experts": 2, "group.2.n_experts": 3, "group.3.n_experts": 4,
        "group.0.rank": 2, "group.1.rank": 4, "group.2.rank": 6, "group.3.rank": 8,
        "router.kind": "topk", "router.top_k": 3,
    })
    config = space.sample(trial)
    assert config.experts_per_layer == (1, 1, 2, 2, 3, 4)
    assert [spec.router.top_k for spec in config.layers] == [1, 1, 2, 2, 3, 3]  # top_k clamped to N


def test_threshold_scale_is_valid_for_every_expert_count():
    space = get_space("free", n_layers=2, routers={"threshold": {"tau_scale": [0.5]}})
    config = space.sample(optuna.trial.FixedTrial({
        "layers.0.n_experts": 2, "layers.1.n_experts": 8, "layers.0.rank": 4, "layers.1.rank": 4,
    }))
    assert [spec.router.tau_max for spec in config.layers] == [0.25, 0.0625]


def test_rank_ladder_rises_inside_a_layer():
    space = get_space("uniform", n_layers=2, rank=(8,), rank_ladder=(1, 4), routers=["dense"])
    ladder = space.sample(optuna.trial.FixedTrial({"group.0.n_experts": 4, "group.0.rank_ladder": 4}))
    flat = space.sample(optuna.trial.FixedTrial({"group.0.n_experts": 4, "group.0.rank_ladder": 1}))
    assert ladder.layers[0].ranks == (2, 4, 6, 8)
    assert flat.layers[0].ranks == (8, 8, 8, 8)


class PathTrial:
    """A trial that takes the choices in ``path`` (indices), then the first option, recording option counts."""

    def __init__(self, path):
        self.path, self.counts = list(path), []

    def _pick(self, options):
        i = self.path[len(self.counts)] if len(self.counts) < len(self.path) else 0
        self.counts.append(len(options))
        return options[i]

    def suggest_categorical(self, name, choices):
        return self._pick(choices)

    def suggest_int(self, name, low, high):
        return self._pick(range(low, high + 1))


def enumerate_configs(space):
    """Every config ``sample`` can return, by walking the tree of define-by-run choices depth first."""
    configs, path = set(), []
    while True:
        trial = PathTrial(path)
        configs.add(space.sample(trial))
        path = [trial.path[i] if i < len(trial.path) else 0 for i in range(len(trial.counts))]
        while path and path[-1] + 1 == trial.counts[len(path) - 1]:
            path.pop()
        if not path:
            return configs
        path[-1] += 1


@pytest.mark.parametrize("monotone", [False, True])
def test_size_counts_every_config_the_space_can_build(monotone):
    """Per-group grids, ladders and two router kinds, chosen so no two choices collapse to one config."""
    space = GroupedSpace(
        name="tiny", n_layers=5, groups=3, n_experts=[[2, 3], [2, 4], [4, 5]], rank=[2, 4],
        rank_ladder=[1, 2], routers={"topk": {"top_k": [1, 2]}, "topp": {"top_p": [0.5]}}, monotone=monotone,
    )
    # By hand: non-decreasing expert profiles 2-2-x, 2-4-x, 3-4-x (x in 4, 5) = 6; rank profiles over {2, 4} = 4.
    expected = (6 * 4 if monotone else 8 * 8) * 2 ** 3 * 3
    assert space.size() == expected
    assert len(enumerate_configs(space)) == expected


class DrawTrial:
    """A trial whose every suggestion is drawn by hypothesis: any value a sampler could ever return."""

    def __init__(self, data):
        self.data = data

    def suggest_categorical(self, name, choices):
        return self.data.draw(st.sampled_from(choices), label=name)

    def suggest_int(self, name, low, high):
        return self.data.draw(st.integers(low, high), label=name)


grids = st.lists(st.sets(st.integers(1, 16), min_size=1, max_size=5).map(sorted), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expert_grids=grids, rank_grids=grids, extra_layers=st.integers(0, 7), data=st.data())
def test_monotone_space_never_decreases(expert_grids, rank_grids, extra_layers, data):
    n_groups = min(len(expert_grids), len(rank_grids))
    # Groups ordered by their largest value: the only requirement a monotone space puts on per-group grids.
    expert_grids = sorted(expert_grids[:n_groups], key=max)
    rank_grids = sorted(rank_grids[:n_groups], key=max)
    space = GroupedSpace(name="prop", n_layers=n_groups + extra_layers, groups=n_groups, n_experts=expert_grids,
                         rank=rank_grids, rank_ladder=[1, 3], routers=["topk", "threshold"], monotone=True)
    config = space.sample(DrawTrial(data))
    experts = [spec.n_experts for spec in config.layers]
    ranks = [max(spec.ranks) for spec in config.layers]
    assert experts == sorted(experts) and ranks == sorted(ranks)
    assert space.params_for(config) is not None  # every sampled config is expressible, hence enqueueable


def test_monotone_grids_that_cannot_continue_are_rejected():
    with pytest.raises(ValueError, match=r"n_experts\[1\].*monotone"):
        GroupedSpace(name="bad", n_layers=4, groups=2, n_experts=[[4, 8], [2, 4]], monotone=True)


@pytest.mark.parametrize("name", ["uniform", "mola", "hilo", "free"])
def test_models_with_fewer_layers_than_quarters(name):
    space = get_space(name, n_layers=3, target_modules=("c_attn", "c_proj"))
    assert len(space.groups) == {"uniform": 1}.get(name, 3)
    assert [seed.name for seed in space.seeds()] == ([] if name == "mola" else ["uniform"])
    config = space.sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask())
    assert config.n_layers == 3 and config.target_modules == ("c_attn", "c_proj")
