"""Real Optuna SQLite studies in tmp_path, laid out as search.run writes them (docs/CONTRACTS.md).

Shared through fixtures only: ``conftest`` as a module name belongs to tests/conftest.py on sys.path.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

import numpy as np

from hilo_core import LLAMA_TARGETS, LayerSpec, MoLoRAConfig, RouterSpec, config_active, config_trainable, module_shapes
from objectives.records import QuestionRecords
from tiny_models import tiny_llama

N_LAYERS = 4
DIRECTIONS = {"accuracy": "maximize", "trainable": "minimize", "active": "minimize"}
COMMAND = "python -m search.run --space hilo --budget 8 --study tiny --task polarity"
N_QUESTIONS = 100


def nested_records(accuracy: float) -> QuestionRecords:
    """Per-question records of ``accuracy`` on 100 questions, right on the first ones: a more accurate trial is
    right on a superset, so the paired difference of two trials is exactly their accuracy difference."""
    correct = np.arange(N_QUESTIONS) < round(accuracy * N_QUESTIONS)
    return QuestionRecords(correct, np.where(correct, 0.7, 0.2).astype(np.float32), "fixture")


def tiny_trials() -> list[dict]:
    """Seeds, searched trials, one failed and one pruned, on a 4-layer tiny Llama."""
    hetero = MoLoRAConfig(layers=(
        LayerSpec(ranks=(2, 8), router=RouterSpec(kind="threshold")),
        LayerSpec(ranks=(4, 4, 4), router=RouterSpec(kind="topp", top_p=0.6)),
        LayerSpec(ranks=(8,), router=RouterSpec(kind="dense"), disabled=True),
        LayerSpec(ranks=(6, 6), router=RouterSpec(kind="topk", top_k=1)),
    ))
    return [
        dict(config=MoLoRAConfig.from_experts([2, 4, 6, 8], 8), accuracy=0.60, seed_name="mola-2468"),
        dict(config=MoLoRAConfig.from_experts([2, 4, 6, 8], [2, 4, 6, 8]), accuracy=0.62, seed_name="hilo-rule"),
        dict(config=MoLoRAConfig.uniform(N_LAYERS, 1, 8), accuracy=0.55, seed_name="uniform"),
        dict(config=MoLoRAConfig.uniform(N_LAYERS, 2, 4), accuracy=0.66),
        dict(config=MoLoRAConfig.from_experts([1, 1, 2, 2], [4, 4, 8, 8]), accuracy=0.58),
        dict(config=MoLoRAConfig.uniform(N_LAYERS, 4, 2), state=TrialState.FAIL, failure="loss became NaN at step 12"),
        dict(config=MoLoRAConfig.uniform(N_LAYERS, 8, 16), accuracy=0.50),
        dict(config=MoLoRAConfig.uniform(N_LAYERS, 6, 6), state=TrialState.PRUNED, failure="pruned at step 40"),
        dict(config=hetero, accuracy=0.64),
    ]


def add_trial(study: optuna.Study, spec: dict, shapes: dict, objectives: tuple[str, ...]) -> None:
    config = spec["config"]
    trainable = config_trainable(config, shapes)
    active = config_active(config, shapes)
    active = 0.6 * trainable if active is None else active  # data-dependent routers: a measured stand-in
    attrs = {"config": config.to_json()}
    if "seed_name" in spec:
        attrs["seed_name"] = spec["seed_name"]
    state = spec.get("state", TrialState.COMPLETE)
    if state == TrialState.COMPLETE:
        attrs["metrics"] = {"accuracy": spec["accuracy"], "trainable_params": trainable, "active_params": active,
                            "train_seconds": 1.5}
        attrs["val_records"] = nested_records(spec["accuracy"]).encode()
        values = {"accuracy": spec["accuracy"], "trainable": trainable, "active": active}
        study.add_trial(create_trial(state=state, values=[values[o] for o in objectives], user_attrs=attrs))
    else:
        study.add_trial(create_trial(state=state, user_attrs={**attrs, "failure": spec["failure"]}))


def make_study(out_root: Path, name: str, trials: list[dict], *, objectives=tuple(DIRECTIONS)) -> optuna.Study:
    """A study at ``<out_root>/<name>/study.db`` with the contract's study and trial attributes."""
    folder = out_root / name
    folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}",
                                directions=[DIRECTIONS[o] for o in objectives])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(objectives))
    for key, value in dict(space="hilo", task="polarity", model="tiny-llama", command=COMMAND, n_layers=N_LAYERS,
                           target_modules=list(LLAMA_TARGETS), layer_alphas=[3.1, 3.5, 4.2, 4.8]).items():
        study.set_user_attr(key, value)
    shapes = module_shapes(tiny_llama(N_LAYERS), LLAMA_TARGETS)
    for spec in trials:
        add_trial(study, spec, shapes, objectives)
    return study


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def out_root(tmp_path) -> Path:
    return tmp_path / "out"


@pytest.fixture(name="make_study")
def make_study_fixture():
    return make_study


@pytest.fixture
def trial_specs() -> list[dict]:
    return tiny_trials()


@pytest.fixture
def tiny_study(out_root) -> optuna.Study:
    return make_study(out_root, "tiny", tiny_trials())
