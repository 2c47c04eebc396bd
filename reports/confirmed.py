"""Read a study's confirmation runs and say, per seed rule, what the confirmed front can claim against it.

The confirmation stage (``search.confirm``) retrains the best candidates and the best seed rules with
fresh training seeds and scores them on the test split, for the first time in the study; its runs live in
the study ``<study>.confirm`` of the same storage. Decisions (which config to export) use the runs'
validation scores; the verdicts report their test scores. docs/statistics.md states what intervals cover.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from objectives.paired import Comparison, Interval, SeedVariance, compare, mean_interval, pooled_seed_variance
from objectives.records import RECORDS_ATTR, TEST_RECORDS_ATTR, QuestionRecords

CONFIRM_SUFFIX = ".confirm"
MARGIN = 0.02  # non-inferiority margin on accuracy: within 2 points at 95%


def confirm_study_name(study_name: str) -> str:
    return study_name + CONFIRM_SUFFIX


@dataclass(frozen=True)
class ConfirmedConfig:
    """One confirmed config: where it came from and its per-seed records on validation and test."""

    key: str
    role: str  # "candidate" (searched) or "rule" (a seed rule)
    label: str
    of_trial: int
    trainable: float
    active: float
    seeds: tuple[int, ...]
    val: np.ndarray  # (seeds, validation questions) right/wrong
    test: np.ndarray  # (seeds, test questions) right/wrong


@dataclass(frozen=True)
class Verdict:
    """What the searched configs can claim against one seed rule, on the test split."""

    rule: ConfirmedConfig
    best: ConfirmedConfig | None  # the smallest non-inferior candidate, if any
    comparison: Comparison | None
    better: bool

    def sentence(self) -> str:
        r = self.rule
        if self.best is None or self.comparison is None:
            return (f"{r.label}: no searched config is non-inferior to it (within {MARGIN:.0%} at 95%) with no more "
                    "trainable and active parameters")
        c, b = self.comparison, self.best
        kind = "better than" if self.better else "non-inferior to"
        return (f"{r.label}: trial {b.of_trial} is {kind} it at {b.trainable / r.trainable:.0%} of its trainable "
                f"and {b.active / max(r.active, 1e-9):.0%} of its active parameters: delta = {c.delta * 100:+.1f} points "
                f"[{c.low * 100:+.1f}, {c.high * 100:+.1f}], {c.n_questions} test questions, {c.seeds_a}+{c.seeds_b} seeds")


@dataclass(frozen=True)
class Confirmation:
    """Every confirmed config of one study and the training-seed variances pooled over them."""

    configs: tuple[ConfirmedConfig, ...]
    settings: dict[str, Any]

    def table(self) -> list[dict[str, Any]]:
        """One row per confirmed config: test accuracy mean and interval (questions and seeds), sizes."""
        rows = []
        for c in self.configs:
            ci = self.test_interval(c)
            rows.append({"label": c.label, "role": c.role, "trial": c.of_trial, "trainable": c.trainable,
                         "active": c.active, "seeds": len(c.seeds), "val": float(c.val.mean()),
                         "test": ci.estimate, "low": ci.low, "high": ci.high, "questions": c.test.shape[1]})
        return rows

    def covers(self) -> str:
        """What the intervals cover, in words."""
        sv = self.test_seed_variance
        if not sv.known:
            return "test-question sampling only (no config has two confirmation seeds)"
        return (f"test-question sampling and training-seed variance (pooled over {sv.configs} configs, "
                f"{sv.df} degrees of freedom)")

    @cached_property
    def test_seed_variance(self) -> SeedVariance:
        """Pooled once: every paired comparison of the verdicts uses it."""
        return pooled_seed_variance([c.test for c in self.configs])

    @cached_property
    def val_seed_variance(self) -> SeedVariance:
        return pooled_seed_variance([c.val for c in self.configs])

    def test_interval(self, c: ConfirmedConfig) -> Interval:
        return mean_interval(c.test, seed_variance=self.test_seed_variance)

    def versus(self, a: ConfirmedConfig, b: ConfirmedConfig) -> Comparison:
        """Paired on the test questions, with the confirmation runs' pooled seed variance."""
        return compare(a.test, b.test, seed_variance=self.test_seed_variance)

    @property
    def candidates(self) -> list[ConfirmedConfig]:
        return [c for c in self.configs if c.role == "candidate"]

    @property
    def rules(self) -> list[ConfirmedConfig]:
        return [c for c in self.configs if c.role == "rule"]

    def best_candidate(self) -> ConfirmedConfig | None:
        """The candidate with the highest *validation* mean over its confirmation seeds (decide on validation)."""
        pool = self.candidates or list(self.configs)
        return max(pool, key=lambda c: (float(c.val.mean()), -c.of_trial)) if pool else None

    def verdicts(self, *, alpha: float = 0.05) -> list[Verdict]:
        out = []
        for rule in self.rules:
            smaller = sorted((c for c in self.candidates if c.key != rule.key and c.trainable <= rule.trainable
                              and c.active <= rule.active), key=lambda c: (c.trainable, c.active))
            found = None
            for c in smaller:
                cmp = self.versus(c, rule)
                if cmp.non_inferior(MARGIN):
                    found = (c, cmp)
                    break
            out.append(Verdict(rule, found[0] if found else None, found[1] if found else None,
                               bool(found and found[1].significantly_greater(alpha))))
        return out

    def beats_every_rule(self, *, alpha: float = 0.05) -> list[int]:
        """Trial numbers of candidates significantly better than every confirmed rule."""
        return [c.of_trial for c in self.candidates if self.rules and all(
            self.versus(c, r).significantly_greater(alpha) for r in self.rules)]


def read_confirmation(study_name: str, storage: str) -> Confirmation | None:
    """The confirmation runs of ``study_name`` in ``storage``; None when it was never confirmed."""
    name = confirm_study_name(study_name)
    if name not in optuna.get_all_study_names(storage=storage):
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    groups: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get(TEST_RECORDS_ATTR):
            groups.setdefault(t.user_attrs["config"], []).append(t)
    configs = []
    for key, runs in groups.items():
        runs.sort(key=lambda t: t.user_attrs["train_seed"])
        a, m = runs[0].user_attrs, runs[0].user_attrs["metrics"]
        val = [QuestionRecords.decode(t.user_attrs[RECORDS_ATTR]).values("accuracy") for t in runs]
        test = [QuestionRecords.decode(t.user_attrs[TEST_RECORDS_ATTR]).values("accuracy") for t in runs]
        configs.append(ConfirmedConfig(key=key, role=a["role"], label=a["label"], of_trial=a["of_trial"],
                                       trainable=float(m["trainable_params"]), active=float(m["active_params"]),
                                       seeds=tuple(t.user_attrs["train_seed"] for t in runs),
                                       val=np.stack(val), test=np.stack(test)))
    if not configs:
        return None
    configs.sort(key=lambda c: (c.role != "candidate", c.of_trial))
    return Confirmation(configs=tuple(configs), settings=dict(study.user_attrs))
