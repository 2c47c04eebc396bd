"""Space files: a valid YAML/JSON file builds its space; a bad one fails naming the key."""

import json

import optuna
import pytest
import yaml

from spaces import get_space, load_space_file

GOOD = {
    "name": "deep-heavy",
    "groups": 4,
    "monotone": True,
    "n_experts": [[1, 2], [2, 4], [4, 6], [6, 8]],
    "rank": [2, 4, 6, 8],
    "rank_ladder": [1, 2],
    "routers": {"topk": {"top_k": [1, 2]}, "topp": {"top_p": [0.75]}, "threshold": {}},
}


def write(tmp_path, data, suffix=".yaml"):
    path = tmp_path / f"space{suffix}"
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_good_file_builds_its_space(tmp_path, suffix):
    space = load_space_file(write(tmp_path, GOOD, suffix), n_layers=30)
    assert space.name == "deep-heavy" and space.monotone
    assert space.n_experts == ((1, 2), (2, 4), (4, 6), (6, 8)) and space.rank == ((2, 4, 6, 8),) * 4
    assert space.routers == {"topk": (1, 2), "topp": (0.75,), "threshold": (0.5, 0.75, 1.0)}
    assert [seed.name for seed in space.seeds()] == ["mola-2468", "hilo-rule"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        experts = space.sample(study.ask()).experts_per_layer
        assert experts == tuple(sorted(experts))
    assert "deep-heavy" in space.describe()


def test_omitted_keys_take_the_hilo_defaults(tmp_path):
    space = load_space_file(write(tmp_path, {"monotone": True}), n_layers=32)
    hilo = get_space("hilo", n_layers=32, monotone=True)
    assert space.size() == hilo.size() and space.name == "space"


BAD = [
    ({"routers": {"softmax": {}}}, r"routers\.softmax: unknown router kind 'softmax'; allowed: \['topk'"),
    ({"routers": {"topk": {"top_k": []}}}, r"routers\.topk\.top_k: grid must be non-empty"),
    ({"routers": {"topk": {"top_p": [0.5]}}}, r"routers\.topk: unknown keys \['top_p'\]; allowed: \['top_k'\]"),
    ({"routers": {"topp": {"top_p": [1.5]}}}, r"routers\.topp\.top_p: values must lie in \(0, 1\], got 1\.5"),
    ({"n_experts": []}, r"n_experts: grid must be non-empty"),
    ({"rank": [4, -4]}, r"rank: values must be positive integers, got -4"),
    ({"rank": [[2], [4], [8]]}, r"rank: per-group grids need one list per group \(4\), got 3"),
    ({"rank": [[2], [4], [0], [8]]}, r"rank\[2\]: values must be positive integers, got 0"),
    ({"n_experts": [[8], [4], [4], [8]], "monotone": True}, r"n_experts\[1\]: with monotone"),
    ({"rank_ladder": [1, 1]}, r"rank_ladder: grid has duplicate values"),
    ({"monotone": "yes"}, r"monotone must be true or false, got 'yes'"),
    ({"groups": 40}, r"groups must be an integer in \[1, n_layers=32\], got 40"),
    ({"layers": 4}, r"unknown keys \['layers'\]; allowed: \['name', 'groups'"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[m.split(":")[0].replace("\\", "") for _, m in BAD])
def test_a_bad_file_names_the_key(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ValueError, match=message) as err:
        load_space_file(path, n_layers=32)
    assert str(err.value).startswith(str(path))


def test_unreadable_files_say_so(tmp_path):
    with pytest.raises(ValueError, match="cannot read space file"):
        load_space_file(tmp_path / "missing.yaml", n_layers=32)
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_space_file(bad, n_layers=32)


def test_builtin_options_are_checked_like_files():
    with pytest.raises(ValueError, match=r"space must be one of \['uniform', 'mola', 'alphalora', 'hilo', 'free'\]"):
        get_space("hila", n_layers=32)
    with pytest.raises(ValueError, match=r"space 'free': unknown options \['groups'\]; allowed"):
        get_space("free", n_layers=32, groups=4)
    with pytest.raises(ValueError, match=r"n_experts: values must be positive integers, got 0"):
        get_space("hilo", n_layers=32, n_experts=(0, 1))
    with pytest.raises(ValueError, match="space 'alphalora' needs layer_alphas"):
        get_space("alphalora", n_layers=32)
    with pytest.raises(ValueError, match=r"layer_alphas must have n_layers=32 entries, got 3"):
        get_space("hilo", n_layers=32, layer_alphas=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"total_experts: values must be >= n_layers=8"):
        get_space("alphalora", n_layers=8, layer_alphas=[2.0] * 8, total_experts=(4, 16))
    with pytest.raises(ValueError, match="target_modules"):
        get_space("hilo", n_layers=8, target_modules="q_proj")
