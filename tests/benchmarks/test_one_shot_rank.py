"""benchmarks.one_shot_rank: its statistics against scipy and a resampling loop, its cache keys and config choice,
and one end-to-end study on the tiny Llama and colour task over a miniature signals cache written here."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from benchmarks import one_shot_rank as osr
from benchmarks.paper_table import RunCache
from benchmarks.signals import pick_configs, run_key
from hilo_core import LLAMA_TARGETS, MoLoRAConfig
from objectives.evaluation import validation_fingerprint
from objectives.records import QuestionRecords
from search.one_shot import plan_supernet


# ----------------------------------------------------------------------------------------------- statistics
def test_rank_study_matches_scipy_and_a_resampling_loop():
    one_shot = np.array([0.50, 0.61, 0.55, 0.70, 0.58, 0.66, 0.52, 0.64])
    standalone = np.array([[0.60, 0.63, 0.61, 0.70, 0.62, 0.64, 0.59, 0.69],
                           [0.58, 0.65, 0.60, 0.68, 0.66, 0.63, 0.61, 0.66]])
    got = osr.rank_study({"test_accuracy": one_shot}, {"test_accuracy": standalone}, n_resamples=2000, seed=3)
    cells = {(r["signal"], r["kind"]): r for r in got["agreement"] + got["reference"]}
    mean = standalone.mean(axis=0)
    spearman = cells[("test_accuracy", "spearman")]
    assert spearman["value"] == pytest.approx(stats.spearmanr(one_shot, mean).statistic, abs=1e-12)
    assert cells[("test_accuracy", "kendall")]["value"] == pytest.approx(stats.kendalltau(one_shot, mean).statistic,
                                                                         abs=1e-12)
    ref = cells[("standalone seed 0 test_accuracy", "kendall")]
    assert ref["value"] == pytest.approx(stats.kendalltau(standalone[0], standalone[1]).statistic, abs=1e-12)
    rng, values = np.random.default_rng(3), []
    for _ in range(2000):  # paired: one resample of configs for both sides (the same draws as scipy's here)
        idx = rng.integers(0, one_shot.size, one_shot.size)
        x, y = one_shot[idx], mean[idx]
        values.append(0.0 if np.ptp(x) == 0 or np.ptp(y) == 0 else stats.spearmanr(x, y).statistic)
    lo, hi = np.percentile(values, [2.5, 97.5])
    assert spearman["low"] == pytest.approx(lo, abs=0.05) and spearman["high"] == pytest.approx(hi, abs=0.05)
    assert spearman["low"] <= spearman["value"] <= spearman["high"]
    sd = got["spread"]
    assert sd["one_shot"]["test_accuracy"]["config_sd"] == pytest.approx(one_shot.std(ddof=1))
    assert sd["one_shot"]["test_accuracy"]["distinct"] == 8
    assert sd["standalone"]["test_accuracy"]["config_sd"] == pytest.approx(mean.std(ddof=1))
    assert "seed_sd" in sd["standalone"]["test_accuracy"]


def test_one_standalone_seed_has_no_reference_and_no_seed_spread():
    got = osr.rank_study({"v": [1, 2, 3, 4]}, {"t": np.array([[0.1, 0.3, 0.2, 0.4]])}, n_resamples=200)
    assert not got["reference"] and "seed_sd" not in got["spread"]["standalone"]["t"]
    assert got["agreement"][0]["value"] == pytest.approx(0.8)


def _entry(name, seeds):
    return {"name": name, "config": None, "seeds": {s: {} for s in seeds}}


def test_choose_takes_the_most_seeds_that_leave_enough_configs():
    runs = {str(i): _entry(f"c{i}", (0, 1) if i < 4 else (0,)) for i in range(6)}
    chosen, k = osr.choose(runs, 2)
    assert k == 2 and [e["name"] for e in chosen] == ["c0", "c1", "c2", "c3"]
    runs["0"] = _entry("c0", (0,))  # now only 3 configs have both seeds: seed 0 alone, all 6 configs
    chosen, k = osr.choose(runs, 2)
    assert k == 1 and len(chosen) == 6
    with pytest.raises(SystemExit):
        osr.choose({str(i): _entry(f"c{i}", (0, 1)) for i in range(3)}, 2)


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny model and task, the hilo space on it, 5 configs and the standalone fidelity of the study."""
    from search.facts import build_space, model_facts
    from tiny_models import COLOUR_WORDS, save_tiny_causal_lm, write_colours_task

    folder = tmp_path_factory.mktemp("one_shot_rank")
    model = str(save_tiny_causal_lm(folder / "tiny", COLOUR_WORDS, n_layers=4))
    task = str(write_colours_task(folder / "colours.jsonl"))
    facts = model_facts(model, LLAMA_TARGETS, Console(quiet=True))
    space = build_space("hilo", facts)
    configs = pick_configs(space, facts.shapes, ["mola-2468", "uniform", "hilo-rule"], n_random=2)
    args = osr.parse(["--steps", "1", "--factor", "2", "--batch-size", "4", "--eval-examples", "8",
                      "--test-examples", "8"])
    return model, task, configs, osr.standalone_fidelity(args), space, facts


def test_score_key_names_everything_that_decides_a_score(setup):
    model, task, configs, fidelity, *_ = setup
    a, b = list(configs.values())[:2]
    base = dict(supernet="s" * 40, supernet_steps=8, seed=0, config=a)
    key = osr.score_key(task, model, fidelity, **base)
    assert key == osr.score_key(task, model, fidelity, **base)
    for change in ({"supernet": "t" * 40}, {"supernet_steps": 9}, {"seed": 1}, {"config": b}):
        assert osr.score_key(task, model, fidelity, **{**base, **change}) != key, change
    assert osr.score_key(task, model, replace(fidelity, max_test_examples=6), **base) != key  # other questions
    assert osr.score_key(task, model, replace(fidelity, lr=2e-3), **base) != key
    assert osr.question_digest(task, fidelity) != osr.question_digest(task, replace(fidelity, max_eval_examples=7))


@pytest.mark.parametrize("draw", osr.DRAWS)
def test_every_draw_covers_the_study_configs(setup, draw):
    from hilo_core.elastic import misfit

    model, task, configs, fidelity, space, facts = setup
    study = list(configs.values())
    maxima, sampler, description = osr.supernet_plan(draw, space, study, 1, facts.shapes)
    drawn = [c for step in range(20) for c in sampler(random.Random(f"1:{step}"))]
    assert all(len(sampler(random.Random(f"1:{step}"))) == 4 for step in range(3))
    for config in study + drawn:
        assert config.lora_alpha == maxima.lora_alpha and config.target_modules == maxima.target_modules
        assert not [m for s, top in zip(config.layers, maxima.layers)
                    if (m := misfit(s, n_max=top.n_experts, r_max=max(top.ranks)))]
    jsons = {c.to_json() for c in study}
    assert (draw == "space") == (not jsons & {c.to_json() for c in drawn[2::4] + drawn[3::4]})
    assert (draw == "configs") == ({c.to_json() for c in drawn[2::4]} <= jsons)
    if draw == "space":  # why --seed defaults to 1: signals' random configs are draws of RandomSampler(seed=0)
        pool = {c.to_json() for c in plan_supernet(space, 0).pool}
        assert jsons & pool and not jsons & {c.to_json() for c in plan_supernet(space, 1).pool}
    if draw == "configs":
        assert maxima.to_json() == osr.hull(study, like=study[0]).to_json()
    ids = {osr.supernet_id(task, model, fidelity, seed=0, draw=d, space="hilo", maxima=maxima, configs=study)
           for d in osr.DRAWS}
    assert len(ids) == 3  # and the draw is part of the identity


def test_extra_configs_and_fill_seeds_train_by_signals_run_one(setup, tmp_path):
    model, task, configs, fidelity, space, facts = setup
    path = tmp_path / "signals_runs.jsonl"
    _write_signals_cache(path, model, task, configs, fidelity)
    cache = RunCache(path)
    before = osr.standalone_runs(cache, task, model, fidelity)
    args = osr.parse(["--model", model, "--steps", "1", "--factor", "2", "--batch-size", "4", "--eval-examples",
                      "8", "--test-examples", "8", "--extra-configs", "1", "--fill-seeds"])
    osr.train_standalone(args, [task], space, facts, fidelity, cache)
    after = osr.standalone_runs(RunCache(path), task, model, fidelity)
    assert len(after) == len(before) + 1 and all(sorted(e["seeds"]) == [0, 1] for e in after.values())
    (new,) = [e for j, e in after.items() if j not in before]
    assert new["name"] == "extra-0" and new["seeds"][1]["test"]["records"]
    lines = len(path.read_text().splitlines())
    osr.train_standalone(args, [task], space, facts, fidelity, RunCache(path))  # all cached: nothing trained
    assert len(path.read_text().splitlines()) == lines


def _fake_records(rng, n, fingerprint, accuracy):
    correct = np.zeros(n, bool)
    correct[rng.choice(n, int(round(accuracy * n)), replace=False)] = True
    return QuestionRecords(correct, rng.uniform(0.1, 0.9, n).astype(np.float32), fingerprint)


def _cell(r):
    return {"accuracy": r.accuracy, "score": r.score, "loss": r.loss, "records": r.encode()}


def _write_signals_cache(path, model, task, configs, fidelity):
    """What benchmarks.signals stores for long runs, with made-up accuracies: seeds 0 and 1 for every config but
    the last (seed 0 only), plus one run at another fidelity that must be ignored."""
    rng = np.random.default_rng(0)
    cache = RunCache(path)
    prints = (validation_fingerprint(task, fidelity, model),
              validation_fingerprint(osr.swapped(task), replace(fidelity, max_eval_examples=8), model))
    accuracy = {}
    names = list(configs)
    for i, (name, config) in enumerate(configs.items()):
        for seed in (0, 1) if i < len(names) - 1 else (0,):
            acc = accuracy[(name, seed)] = (1 + (i * 3 + seed * 2) % 8) / 8
            val, test = _fake_records(rng, 8, prints[0], 1 - acc), _fake_records(rng, 8, prints[1], acc)
            cache.put(run_key(task, model, fidelity, seed, config),
                      {"task": task, "seed": seed, "name": name, "config": config.to_dict(),
                       "steps": {str(fidelity.steps): {**_cell(val), "seconds": 1.0}}, "test": _cell(test),
                       "trainable": 1, "active": 1.0, "seconds": 10.0 + seed, "load": 0.0})
    other = replace(fidelity, steps=fidelity.steps + 1)
    cache.put(run_key(task, model, other, 0, configs[names[0]]),
              {"task": task, "seed": 0, "name": "elsewhere", "config": configs[names[0]].to_dict(), "steps": {},
               "test": {"accuracy": 1.0}, "seconds": 1.0})
    return accuracy


def test_study_end_to_end_on_a_miniature_cache(setup, tmp_path):
    from objectives.supernet import score_subconfig

    model, task, configs, fidelity, *_ = setup
    results = tmp_path / "results"
    accuracy = _write_signals_cache(results / "signals_runs.jsonl", model, task, configs, fidelity)
    argv = ["--model", model, "--tasks", task, "--steps", "1", "--factor", "2", "--batch-size", "4",
            "--eval-examples", "8", "--test-examples", "8", "--supernet-steps", "3", "--resamples", "200",
            "--results", str(results), "--json", str(tmp_path / "rank.json"), "--doc", str(tmp_path / "doc.md")]
    result = osr.main(argv)
    res = result["tasks"][task]
    names = list(configs)[:-1]  # the last config has one seed: 4 configs keep both seeds
    assert res["configs"] == names and res["seeds"] == 2 and res["seeds_asked"] == 2
    standalone = np.array([[accuracy[(n, s)] for n in names] for s in (0, 1)])
    assert [r["standalone_test_accuracy"] for r in res["per_config"]] == standalone.T.tolist()

    # every cached one-shot score is score_subconfig of its config, recomputed from the checkpoint
    (checkpoint,) = results.glob("one_shot_rank/*/supernet.pt")
    scored = [json.loads(line) for line in (results / "one_shot_rank_runs.jsonl").read_text().splitlines()]
    assert [r["name"] for r in scored] == names
    for row, record in zip(res["per_config"], scored):
        config = MoLoRAConfig.from_dict(record["config"])
        val = score_subconfig(config, task, fidelity, checkpoint=checkpoint, model=model)
        test = score_subconfig(config, osr.swapped(task), replace(fidelity, max_eval_examples=8),
                               checkpoint=checkpoint, model=model)
        assert record["validation"]["records"] == val.records.encode()
        assert record["test"]["records"] == test.records.encode()
        assert (row["val_accuracy"], row["val_score"], row["test_accuracy"]) == (val.accuracy, val.score,
                                                                                test.accuracy)

    # the reported numbers are scipy's on those scores
    cells = {(r["signal"], r["target"], r["kind"]): r for r in res["agreement"]}
    one_shot = [r["test_accuracy"] for r in res["per_config"]]
    want = stats.kendalltau(one_shot, standalone.mean(axis=0)).statistic if np.ptp(one_shot) else 0.0
    assert cells[("test_accuracy", "test_accuracy", "kendall")]["value"] == pytest.approx(want, abs=1e-12)
    assert {s for s, _, _ in cells} == {"val_accuracy", "val_score", "test_accuracy"}
    assert {t for _, t, _ in cells} == {"test_accuracy", "val_accuracy"}
    assert json.loads((tmp_path / "rank.json").read_text())["tasks"][task]["configs"] == names
    doc = (tmp_path / "doc.md").read_text()
    assert osr.SECTION in doc and doc.count(osr.START) == 1 and doc.count(osr.END) == 1
    assert "4 configs, 2 standalone seeds of 2 asked" in doc

    # a rerun reuses the super-adapter and the scores; --analyse-only needs nothing else; the doc block is replaced
    stamp, size = checkpoint.stat().st_mtime_ns, len(scored)
    again = osr.main(argv + ["--analyse-only"])
    assert checkpoint.stat().st_mtime_ns == stamp
    assert len((results / "one_shot_rank_runs.jsonl").read_text().splitlines()) == size
    assert again["tasks"][task]["agreement"] == res["agreement"]
    assert (tmp_path / "doc.md").read_text().count(osr.START) == 1
    assert (results / "one_shot_rank" / ".gitignore").read_text() == "*\n"

    # more steps continue the same super-adapter (same folder); --analyse-only refuses what is not there
    with pytest.raises(SystemExit):
        osr.main([a if a != "3" else "4" for a in argv] + ["--analyse-only"])
