"""Seeds enqueued in a real Optuna study come back from ``sample`` as exactly the seed configs."""

import optuna
import pytest

from spaces import SPACE_NAMES, get_space, seed_config

ALL_MOLA = ["mola-2468", "mola-5555", "mola-8642", "mola-8228"]
# What each default space can express without layer alphas (spaces/README.md). With alphas, ``alphalora``
# joins wherever its allocation fits; a space may then offer more (the alphalora space can express other
# seeds when the alphas make the allocation land on them).
OFFERED = {
    ("uniform", ()): ["mola-5555", "uniform"],
    ("mola", ()): ALL_MOLA,
    ("alphalora", ()): ["alphalora"],
    ("hilo", ()): [*ALL_MOLA, "hilo-rule", "uniform"],
    ("hilo", (("monotone", True),)): ["mola-2468", "mola-5555", "hilo-rule", "uniform"],
    ("hilo", (("rank_ladder", (1, 2)),)): [*ALL_MOLA, "hilo-rule", "uniform"],
    ("free", ()): [*ALL_MOLA, "hilo-rule", "uniform"],
}


def replay_seeds(space, storage=None):
    """Enqueue every seed, run one trial per seed, return ``{seed_name: sampled config}``."""
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.TPESampler(seed=0))
    for seed in space.seeds():
        study.enqueue_trial(seed.params, user_attrs={"seed_name": seed.name})
    sampled = {}

    def objective(trial):
        sampled[trial.user_attrs["seed_name"]] = space.sample(trial)
        return 0.0

    study.optimize(objective, n_trials=len(space.seeds()))
    return sampled


@pytest.mark.parametrize("n_layers", [6, 30, 32])
@pytest.mark.parametrize("name,options", list(OFFERED))
def test_enqueued_seeds_are_rebuilt_exactly(name, options, n_layers, alphas_for):
    alphas = alphas_for(n_layers)
    space = get_space(name, n_layers=n_layers, layer_alphas=alphas, **dict(options))
    offered = [seed.name for seed in space.seeds()]
    assert set(OFFERED[name, options]) <= set(offered)
    if name in ("alphalora", "free"):
        assert "alphalora" in offered
    sampled = replay_seeds(space)
    assert list(sampled) == offered
    for seed_name, config in sampled.items():
        assert config == seed_config(seed_name, n_layers=n_layers, layer_alphas=alphas)


@pytest.mark.parametrize("name,options", [key for key in OFFERED if key[0] != "alphalora"])
def test_each_space_offers_the_documented_seeds(name, options):
    space = get_space(name, n_layers=32, **dict(options))
    assert [seed.name for seed in space.seeds()] == OFFERED[name, options]


def test_alphalora_space_offers_only_its_own_seed_when_alphas_vary():
    alphas = [2.0 + ((7 * i) % 32) / 32 for i in range(32)]  # scrambled in [2, 3): no group structure
    space = get_space("alphalora", n_layers=32, layer_alphas=alphas)
    assert [seed.name for seed in space.seeds()] == ["alphalora"]
    assert replay_seeds(space)["alphalora"] == seed_config("alphalora", n_layers=32, layer_alphas=alphas)


def test_seeds_survive_an_rdb_storage(tmp_path, alphas_for):
    """Enqueued params go through JSON in SQLite (floats such as top_p 0.75, beta 2.5 included)."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    alphas = alphas_for(30)
    for space in (get_space("alphalora", n_layers=30, layer_alphas=alphas),
                  get_space("hilo", n_layers=30, layer_alphas=alphas, monotone=True)):
        for seed_name, config in replay_seeds(space, storage=storage).items():
            assert config == seed_config(seed_name, n_layers=30, layer_alphas=alphas)


def test_seeds_follow_the_spaces_targets():
    targets = ("q_proj", "v_proj")
    space = get_space("hilo", n_layers=8, target_modules=targets)
    for seed_name, config in replay_seeds(space).items():
        assert config == seed_config(seed_name, n_layers=8, target_modules=targets)


def test_a_config_off_the_grid_is_not_a_seed():
    space = get_space("hilo", n_layers=32, n_experts=(1, 2, 4, 8))
    assert [seed.name for seed in space.seeds()] == ["mola-8228", "uniform"]
    assert space.params_for(seed_config("mola-5555", n_layers=32)) is None


def test_every_space_name_has_a_documented_seed_list():
    assert {name for name, _ in OFFERED} == set(SPACE_NAMES)
