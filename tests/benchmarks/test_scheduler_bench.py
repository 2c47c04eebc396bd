"""benchmarks.scheduler's bookkeeping: an arm's time is every trial's and rung run's seconds plus a one-shot
arm's super-adapter training, summed here by a loop over the stored numbers; each arm gets its own flags."""

from __future__ import annotations

import random
from argparse import Namespace

import optuna
import pytest

from benchmarks import scheduler as bench
from reports.rungs import rungs_study_name
from search.one_shot import SUPERNET_ATTR


def _study(url: str, name: str, seconds: list[float]) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=url, directions=bench.DIRS)
    for s in seconds:
        t = study.ask()
        t.set_user_attr("seconds", s)
        study.tell(t, [0.5, 1.0, 1.0])
    return study


@pytest.mark.parametrize("supernet", [None, 123.25])
def test_spent_seconds_sums_trials_rungs_and_the_super_adapter(tmp_path, supernet):
    rng = random.Random(7)
    main, rungs = [rng.uniform(1, 90) for _ in range(5)], [rng.uniform(1, 90) for _ in range(3)]
    url = bench.storage(tmp_path, "arm")
    (tmp_path / "arm").mkdir()
    assert bench.spent_seconds(url, "arm") == 0.0  # no storage yet: nothing spent (the one-shot arm's cue)
    study = _study(url, "arm", main)
    _study(url, rungs_study_name("arm"), rungs)
    if supernet is not None:
        study.set_user_attr(SUPERNET_ATTR, {"steps": 24, "seconds": supernet})
    expected = sum(main) + sum(rungs) + (supernet or 0.0)
    assert bench.spent_seconds(url, "arm") == pytest.approx(expected, rel=1e-12)


def test_each_arm_passes_its_own_flags():
    args = Namespace(space="hilo", model="m", fidelity=12, batch_size=8, eval_examples=100, out="o", eta=3,
                     prior_decay=12, supernet_steps=24, seed_repeats=1)
    argv = {arm: bench.search_argv("s", arm, "csqa", 1, args, budget=5, left=1800.0) for arm in bench.ARMS}
    assert argv["nsga2"][argv["nsga2"].index("--budget-hours") + 1] == str(0.5)
    assert "--pruner" in argv["pruner"] and "--scheduler" not in argv["pruner"]
    assert argv["asha"][-4:] == ["--scheduler", "asha", "--eta", "3"]
    assert "--prior" in argv["asha-prior"] and "--prior" not in argv["asha"]
    assert argv["one-shot"][-4:] == ["--evaluator", "one-shot", "--supernet-steps", "24"]
    assert all("--evaluator" not in a for arm, a in argv.items() if arm != "one-shot")
    assert all(a[a.index("--seed-repeats") + 1] == "1" for a in argv.values())
