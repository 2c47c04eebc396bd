"""Fuzzing the two inputs a user hands us as files: MoLoRAConfig JSON and space files.

Whatever the bytes, the only exception allowed out is the documented ValueError (naming the problem);
a value that is accepted must also survive the round trip (config) or sample a valid config (space).
"""

import json

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hilo_core import MoLoRAConfig
from spaces import load_space_file
from spaces.file import FILE_KEYS

optuna.logging.set_verbosity(optuna.logging.WARNING)

SCALARS = st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=True, allow_infinity=True) \
    | st.text(max_size=8) | st.sampled_from(["topk", "dense", "threshold", "topp", "nonsense"])
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
ROUTER = st.fixed_dictionaries({}, optional={"kind": JSON, "top_k": JSON, "tau_max": JSON, "top_p": JSON})
LAYER = st.fixed_dictionaries({"ranks": st.lists(JSON, max_size=4) | JSON},
                              optional={"router": ROUTER | JSON, "disabled": JSON})
# Near-valid configs find the validation branches; arbitrary JSON finds the type confusions.
CONFIG = st.fixed_dictionaries({"layers": st.lists(LAYER, max_size=4) | JSON},
                               optional={"target_modules": st.lists(JSON, max_size=3) | JSON,
                                         "lora_alpha": JSON, "lora_dropout": JSON}) | JSON
SPACE = st.fixed_dictionaries({}, optional={k: JSON for k in FILE_KEYS}) | JSON


@settings(max_examples=400, deadline=None)
@given(CONFIG)
def test_config_json_only_raises_value_error(data):
    text = json.dumps(data)
    try:
        config = MoLoRAConfig.from_json(text)
    except ValueError as err:
        assert str(err)
        return
    assert MoLoRAConfig.from_json(config.to_json()) == config


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_config_bytes_only_raise_value_error(raw):
    try:
        MoLoRAConfig.from_json(raw.decode("utf-8", "replace"))
    except ValueError as err:
        assert str(err)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=SPACE, as_yaml=st.booleans())
def test_space_file_only_raises_value_error(data, as_yaml, tmp_path):
    import yaml

    path = tmp_path / ("space.yaml" if as_yaml else "space.json")
    path.write_text(yaml.safe_dump(data) if as_yaml else json.dumps(data))
    try:
        space = load_space_file(path, n_layers=4, layer_alphas=[2.0, 3.0, 4.0, 5.0])
    except ValueError as err:
        assert str(path) in str(err)
        return
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    config = space.sample(study.ask())
    assert isinstance(config, MoLoRAConfig) and config.n_layers == 4


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=80))
def test_space_file_bytes_only_raise_value_error(raw, tmp_path):
    path = tmp_path / "space.yaml"
    path.write_bytes(raw)
    with pytest.raises(ValueError):
        load_space_file(path, n_layers=4)
