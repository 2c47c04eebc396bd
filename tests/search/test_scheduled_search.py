"""Successive halving end to end on the tiny model: promotions follow the rule, a promoted run equals one trained
uninterrupted, sh waits for a rung, two workers never promote twice, a kill mid-rung resumes without loss."""

import csv
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from dataclasses import replace

import optuna
import pytest
from optuna.trial import TrialState

from hilo_core import MoLoRAConfig
from objectives import Fidelity, evaluate, get_task
from objectives.front import search_front
from objectives.records import stored_records
from reports.rungs import highest_rungs, rung_table
from search.confirm import choose
from search.run import main
from search.scheduler import promoted_count, promotion_order
from search.study import STALE_REASON

from search_cli import cli, search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)
BUDGET = 8  # mola on the tiny model: 4 seed rules + 4 sampled


def _args(task_file, model_dir, out, kind="asha", rungs="1:4,2:8,3:8", *extra):
    return search_args(task_file, model_dir, out, "--budget", str(BUDGET), "--scheduler", kind, "--eta", "2",
                       "--rungs", rungs, *extra, fidelity=int(rungs.split(",")[-1].split(":")[0]))


def _studies(out):
    url = f"sqlite:///{out}/s/study.db"
    return optuna.load_study(study_name="s", storage=url), optuna.load_study(study_name="s.rungs", storage=url)


def _check_invariants(study, rungs):
    main_runs = study.get_trials()
    assert [t.number for t in main_runs] == list(range(BUDGET))
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["rung"] == 0 for t in main_runs)
    done = [t for t in rungs.get_trials() if t.state == TrialState.COMPLETE]
    per = Counter((t.user_attrs["lineage"], t.user_attrs["rung"]) for t in done)
    assert per and max(per.values()) == 1  # no run promoted twice
    parents = {("s", t.number): t for t in main_runs} | {("s.rungs", t.number): t for t in rungs.get_trials()}
    for t in done:
        p = parents[(t.user_attrs["parent"]["study"], t.user_attrs["parent"]["number"])]
        assert p.state == TrialState.COMPLETE and p.user_attrs["rung"] == t.user_attrs["rung"] - 1
        assert p.user_attrs["config"] == t.user_attrs["config"] and p.user_attrs["train_seed"] == t.user_attrs["train_seed"]
        assert stored_records(t.user_attrs) is not None
    assert any(t.user_attrs["rung"] == 1 for t in done)
    return done


def _configs_at(runs, rung):
    return {t.user_attrs["config"] for t in runs if t.user_attrs["rung"] == rung}


def _check_asha_rule(study, done):
    """Each promotion was, when it was made, of a config in the top n // eta of the rung's finished runs
    (recomputed from the runs finished before the promoted run started: one worker, so nothing in between)."""
    runs = [*study.get_trials(), *done]
    for t in done:
        rung = t.user_attrs["rung"] - 1
        earlier = [u for u in runs if u.user_attrs["rung"] == rung and u.datetime_complete <= t.datetime_start]
        sf = search_front(earlier, study.metric_names)
        order = promotion_order(sf.candidates, seed_variance=sf.seed_variance)
        assert t.user_attrs["config"] in {sf.candidates[i].key for i in order[:promoted_count(len(order), 2)]}


@pytest.fixture(scope="module")
def asha(task_file, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("asha")
    assert main(_args(task_file, tiny_model_dir, out)) == 0
    return out


def test_asha_promotes_by_the_rule_and_a_promoted_run_equals_an_uninterrupted_one(asha, task_file, tiny_model_dir):
    study, rungs = _studies(asha)
    done = _check_invariants(study, rungs)
    _check_asha_rule(study, done)
    top = [t for t in done if t.user_attrs["rung"] == 2]
    assert top, "no config reached the top rung"
    t = top[0]
    task = get_task(str(task_file), seed=0)
    whole = evaluate(MoLoRAConfig.from_json(t.user_attrs["config"]), task,
                     replace(Fidelity(**study.user_attrs["fidelity"]), steps=3, max_eval_examples=8),
                     seed=t.user_attrs["train_seed"], model=tiny_model_dir)
    got = stored_records(t.user_attrs)
    assert got.correct.tolist() == whole.records.correct.tolist()
    assert got.gold_prob.tolist() == whole.records.gold_prob.tolist()  # continued = uninterrupted, bit for bit


def test_checkpoints_kept_while_a_ticket_may_use_them_and_released_after(asha):
    study, rungs = _studies(asha)
    folder = asha / "s" / "checkpoints"
    waiting = [t for t in rungs.get_trials() if t.state == TrialState.WAITING]
    done = [t for t in rungs.get_trials() if t.state == TrialState.COMPLETE]
    assert waiting and all((folder / t.user_attrs["from_checkpoint"]).is_file() for t in waiting)
    assert done and not any((folder / t.user_attrs["from_checkpoint"]).exists() for t in done)
    top = [t for t in done if t.user_attrs["rung"] == 2]
    assert all("checkpoint" not in t.user_attrs for t in top)  # the top rung saves none


def test_reports_and_confirmation_read_the_top_rung(asha):
    study, rungs = _studies(asha)
    table = rung_table(study)
    assert [(r.steps, r.questions) for r in table] == [(1, 4), (2, 8), (3, 8)]
    assert table[0].configs == len({t.user_attrs["config"] for t in study.get_trials()}) and table[0].runs == BUDGET
    assert table[0].promoted == table[1].configs and all(r.seconds >= 0 for r in table)
    reached = highest_rungs(study)
    assert max(reached.values()) == 2 and set(reached) == set(range(BUDGET))
    top_configs = {t.user_attrs["config"] for t in rungs.get_trials() if t.user_attrs.get("rung") == 2
                   and t.state == TrialState.COMPLETE}
    picks = choose(study, top=3, rules=3)
    assert picks and all(p.config in top_configs for p in picks if p.role == "candidate")


def test_sh_promotes_a_rung_only_once_it_is_complete(task_file, tiny_model_dir, tmp_path):
    assert main(_args(task_file, tiny_model_dir, tmp_path, "sh")) == 0
    study, rungs = _studies(tmp_path)
    done = _check_invariants(study, rungs)
    last_rung0 = max(t.datetime_complete for t in study.get_trials())
    assert all(t.datetime_start >= last_rung0 for t in done)
    n0 = len({t.user_attrs["config"] for t in study.get_trials()})
    assert len(_configs_at(done, 1)) == n0 // 2 and len(_configs_at(done, 2)) == len(_configs_at(done, 1)) // 2
    first = [t for t in done if t.user_attrs["rung"] == 1]
    assert all(t.datetime_start >= max(u.datetime_complete for u in first) for t in done if t.user_attrs["rung"] == 2)


def test_two_workers_never_promote_twice(task_file, tiny_model_dir, tmp_path):
    assert main(_args(task_file, tiny_model_dir, tmp_path, "asha", "1:4,2:8,3:8", "--workers", "2")) == 0
    study, rungs = _studies(tmp_path)
    done = _check_invariants(study, rungs)
    assert len({t.user_attrs["worker"] for t in [*study.get_trials(), *done]}) == 2


@pytest.mark.slow
def test_ray_places_scheduled_workers_that_never_promote_twice(task_file, tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert main(_args(task_file, tiny_model_dir, tmp_path, "asha", "1:4,2:8,3:8", "--backend", "ray",
                      "--workers", "2")) == 0
    study, rungs = _studies(tmp_path)
    done = _check_invariants(study, rungs)
    assert len({t.user_attrs["worker"] for t in [*study.get_trials(), *done]}) == 2  # two Ray worker processes


def _running_rung(db):
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return [n for (n,) in conn.execute(
                "SELECT t.number FROM trials t JOIN studies s ON s.study_id = t.study_id JOIN trial_user_attributes a"
                " ON a.trial_id = t.trial_id WHERE s.study_name = 's.rungs' AND t.state = 'RUNNING' AND a.key = 'worker'")]
    except sqlite3.OperationalError:
        return []


@pytest.mark.slow
def test_a_kill_during_a_rung_resumes_and_runs_no_rung_twice(task_file, tiny_model_dir, tmp_path):
    args = _args(task_file, tiny_model_dir, tmp_path, "sh", "1:4,2:8,30:8", "--resume")
    db = tmp_path / "s" / "study.db"
    proc = cli("search.run", *args, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed := _running_rung(db)):
        assert proc.poll() is None, f"search ended before the kill: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "no promoted run seen RUNNING in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, rungs = _studies(tmp_path)
    before = {t.number: t.user_attrs.get("val_records") for t in rungs.get_trials() if t.state == TrialState.COMPLETE}

    assert main(args) == 0  # the killed run goes stale, fails and is queued again

    study, rungs = _studies(tmp_path)
    done = _check_invariants(study, rungs)
    trials = {t.number: t for t in rungs.get_trials()}
    assert trials[killed[0]].state == TrialState.FAIL and trials[killed[0]].user_attrs["failure"] == STALE_REASON
    again = [t for t in done if t.user_attrs["attempt"] == 2]
    assert [t.user_attrs["parent"] for t in again] == [trials[killed[0]].user_attrs["parent"]]
    assert all(trials[n].user_attrs.get("val_records") == r for n, r in before.items())  # finished: unchanged


@pytest.mark.parametrize("extra,message", [
    (["--rungs", "1:4,3:8"], "--rungs 1:4,3:8 needs --scheduler"),
    (["--scheduler", "asha", "--pruner", "median"], "replaces --pruner"),
    (["--scheduler", "sh", "--rungs", "1:4,2:8"], "the last rung must be"),
    (["--scheduler", "sh", "--rungs", "2:4,1:8,3:8"], "steps must increase"),
    (["--scheduler", "sh", "--eta", "1"], "--eta must be"),
])
def test_bad_scheduler_options_exit_2_in_one_line(task_file, tiny_model_dir, tmp_path, capsys, extra, message):
    args = search_args(task_file, tiny_model_dir, tmp_path, "--budget", "4", *extra, fidelity=3)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()  # nothing touched


def test_summary_reports_rungs_and_the_top_rung_front(asha):
    from reports.build import main as build_main

    assert build_main(["--study", "s", "--out-root", str(asha)]) == 0
    text = (asha / "s" / "summary.md").read_text()
    assert "## Successive halving" in text and "read at rung 2" in text
    study, _ = _studies(asha)
    for r in rung_table(study):
        assert f"| {r.rung} | {r.steps} | {r.questions} | {r.configs} | {r.runs} | {r.promoted} |" in text
    with (asha / "s" / "trials.csv").open() as f:
        rows = {int(r["number"]): int(r["highest_rung"]) for r in csv.DictReader(f)}
    assert rows == highest_rungs(study)
