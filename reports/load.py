"""Read a study written by ``search`` into plain rows: one per trial, with its config and its metrics.

The layout is fixed by docs/CONTRACTS.md ("Study storage"); reports never write to a study.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from hilo_core.config import MoLoRAConfig
from objectives.front import SearchFront, plain_front, search_front
from objectives.paired import Interval, mean_interval, wilson_interval
from objectives.records import QuestionRecords, stored_records

from .confirmed import Confirmation, read_confirmation
from .rungs import SCHEDULE_ATTR, RungRow, highest_rungs, rung_table, runs_by_rung

DEFAULT_OUT_ROOT = "reports/out"
# objective name -> key of the same quantity in trial.user_attrs["metrics"]
METRIC_KEYS = {"accuracy": "accuracy", "trainable": "trainable_params", "active": "active_params"}
# used only when a study carries no metric names (set_metric_names was never called)
_FALLBACK_NAMES = ("accuracy", "trainable", "active")
_CONSTRAINTS_KEY = "constraints"  # Optuna's system attribute (and prefix) for constraint values


class StudyError(ValueError):
    """A study that cannot be reported on: missing, empty, or without completed trials."""


def study_folder(study_name: str, out_root: str | Path = DEFAULT_OUT_ROOT) -> Path:
    """Where every file of one study lives: ``<out_root>/<study>/``."""
    return Path(out_root) / study_name


def default_storage(study_name: str, out_root: str | Path = DEFAULT_OUT_ROOT) -> str:
    """The SQLite URL ``search.run`` uses when given no ``--storage``."""
    return f"sqlite:///{study_folder(study_name, out_root) / 'study.db'}"


def open_study(study_name: str, storage: str | None = None,
               out_root: str | Path = DEFAULT_OUT_ROOT) -> optuna.Study:
    """Load an existing study; never creates one (a missing SQLite file would otherwise be created)."""
    url = storage or default_storage(study_name, out_root)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.is_file():
            raise StudyError(f"study {study_name!r}: no storage file at {path} "
                             f"(run `python -m search.run --study {study_name}` or pass --storage URL)")
    try:
        return optuna.load_study(study_name=study_name, storage=url)
    except (ValueError, ImportError, SQLAlchemyError) as err:  # a URL Optuna cannot use: scheme, driver, server
        raise StudyError(f"--storage {url}: cannot open it ({type(err).__name__}: {err})") from None
    except KeyError:
        names = optuna.get_all_study_names(storage=url)
        raise StudyError(f"study {study_name!r} not found in {url}; it holds: {', '.join(names) or 'no studies'}") \
            from None


@dataclass(frozen=True)
class TrialRow:
    """One trial as reports see it; ``metrics`` holds the objective values and every recorded Metrics field."""

    number: int
    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    config: MoLoRAConfig | None = None
    seed_name: str | None = None
    failure: str | None = None
    feasible: bool = True
    on_front: bool = False  # plain Pareto front (point estimates, feasible trials)
    on_noise_front: bool = False  # noise-aware front (every replicate of a config that earned its place)
    records: QuestionRecords | None = field(default=None, repr=False, compare=False)
    train_seed: int | None = None
    replicate_of: int | None = None

    def accuracy_interval(self, confidence: float = 0.95) -> tuple[float, float] | None:
        """Wilson interval of this trial's own validation accuracy (question sampling of one training run)."""
        if self.records is None:
            return None
        return wilson_interval(int(self.records.correct.sum()), len(self.records), confidence=confidence)

    @property
    def is_seed(self) -> bool:
        return self.seed_name is not None

    @property
    def label(self) -> str:
        return f"#{self.number}" + (f" {self.seed_name}" if self.seed_name else "")

    def value(self, name: str) -> float | None:
        """An objective by its study name (``trainable``) or a metrics key (``trainable_params``)."""
        return self.metrics.get(name, self.metrics.get(METRIC_KEYS.get(name, name)))


@dataclass(frozen=True)
class StudyData:
    """Everything a report needs from one study, read once."""

    name: str
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    attrs: dict[str, Any]
    rows: tuple[TrialRow, ...]
    noise: SearchFront | None = None
    confirmation: Confirmation | None = None
    rungs: tuple[RungRow, ...] = ()  # a successive-halving search: one row per rung
    reached: dict[int, int] = field(default_factory=dict)  # trial number -> highest rung its run reached

    @property
    def noise_front(self) -> tuple[TrialRow, ...]:
        """The first trial of each config on the noise-aware front (its replicates are pooled in ``config_interval``)."""
        if self.noise is None:
            return ()
        firsts = {self.noise.trials[self.noise.candidates[i].key][0] for i in self.noise.front}
        return tuple(r for r in self.rows if r.number in firsts)

    def config_interval(self, row: TrialRow) -> tuple[Interval, int] | None:
        """Mean of the accuracy-side signal over every replicate of ``row``'s config with its interval
        (questions, and training seeds when the study has replicates), and the number of seeds."""
        if self.noise is None or row.config is None:
            return None
        key = row.config.to_json()
        for c in self.noise.candidates:
            if c.key == key:
                return mean_interval(c.values, seed_variance=self.noise.seed_variance), c.values.shape[0]
        return None

    @property
    def completed(self) -> tuple[TrialRow, ...]:
        return tuple(r for r in self.rows if r.state == "COMPLETE")

    @property
    def front(self) -> tuple[TrialRow, ...]:
        return tuple(r for r in self.rows if r.on_front)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.state] = out.get(r.state, 0) + 1
        return out


def objective_names(study: optuna.Study) -> tuple[str, ...]:
    """The study's metric names; for a study without them, the contract's names when the count fits."""
    names = study.metric_names
    if names is not None:
        return tuple(names)
    n = len(study.directions)
    return _FALLBACK_NAMES[:n] if n <= len(_FALLBACK_NAMES) else tuple(f"objective_{i}" for i in range(n))


def constraint_values(trial: FrozenTrial) -> list[float]:
    """A trial's constraint values in both of Optuna's layouts: the ``constraints`` list a sampler's
    ``constraints_func`` writes, and one ``constraints:<name>`` attribute per ``trial.set_constraint`` (v5)."""
    attrs = trial.system_attrs
    values = [float(v) for v in attrs.get(_CONSTRAINTS_KEY) or ()]
    return values + [float(v) for k, v in attrs.items() if k.startswith(_CONSTRAINTS_KEY + ":")]


def _row(trial: FrozenTrial, objectives: tuple[str, ...], front: set[int], noise_front: set[int]) -> TrialRow:
    metrics = {k: float(v) for k, v in (trial.user_attrs.get("metrics") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    # search stores the config's trainable count before training, so failed trials carry it too
    trainable = trial.user_attrs.get("trainable_params")
    if isinstance(trainable, (int, float)) and not isinstance(trainable, bool):
        metrics.setdefault("trainable_params", float(trainable))
    if trial.state == TrialState.COMPLETE:
        metrics.update({n: float(v) for n, v in zip(objectives, trial.values)})
    text = trial.user_attrs.get("config")
    try:
        config = MoLoRAConfig.from_json(text) if isinstance(text, str) else None
    except ValueError as err:
        raise StudyError(f"trial {trial.number}: user_attrs['config'] is not a MoLoRAConfig: {err}") from None
    constraints = constraint_values(trial)
    return TrialRow(
        number=trial.number, state=trial.state.name, metrics=metrics, config=config,
        seed_name=trial.user_attrs.get("seed_name"), failure=trial.user_attrs.get("failure"),
        feasible=all(c <= 0.0 for c in constraints), on_front=trial.number in front,
        on_noise_front=trial.number in noise_front, records=stored_records(trial.user_attrs),
        train_seed=trial.user_attrs.get("train_seed"), replicate_of=trial.user_attrs.get("replicate_of"),
    )


def read_study(study: optuna.Study, storage: str | optuna.storages.BaseStorage | None = None, *,
               alpha: float = 0.05) -> StudyData:
    """Rows for every trial with the plain and the noise-aware front marked (feasible trials only), and the
    study's confirmation runs when ``storage`` (where ``<study>.confirm`` lives) is given.

    Raises:
        StudyError: the study has no completed trial, so there is nothing to report.
    """
    # WAITING trials are the rest of a budget queued by search and not run yet: not part of a report
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        states = {}
        for t in trials:
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        detail = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials at all"
        raise StudyError(f"study {study.study_name!r} has no completed trials ({detail}); nothing to report")
    objectives = objective_names(study)
    directions = tuple("maximize" if d == StudyDirection.MAXIMIZE else "minimize" for d in study.directions)
    feasible = [t for t in done if all(c <= 0.0 for c in constraint_values(t))]
    front = {feasible[i].number for i in plain_front([t.values for t in feasible], directions)}
    by_rung = runs_by_rung(study) if study.user_attrs.get(SCHEDULE_ATTR) else {}
    rungs, reached = tuple(rung_table(study, by_rung)), highest_rungs(study, by_rung) if by_rung else {}
    if by_rung:  # the front of a scheduled search is read at its top rung; its runs map to their search trials
        top_runs = by_rung[max(by_rung)]
        noise = search_front(top_runs, objectives, alpha=alpha)
        lineage = {t.number: int(t.user_attrs.get("lineage", t.number)) for t in top_runs}
        noise = replace(noise, trials={k: sorted(lineage[n] for n in v) for k, v in noise.trials.items()})
    else:
        noise = search_front(feasible, objectives, alpha=alpha)
    rows = tuple(_row(t, objectives, front, noise.on_front()) for t in trials)
    confirmation = read_confirmation(study.study_name, storage) if storage is not None else None
    return StudyData(name=study.study_name, objectives=objectives, directions=directions,
                     attrs=dict(study.user_attrs), rows=rows, noise=noise, confirmation=confirmation,
                     rungs=rungs, reached=reached)


def load(study_name: str, storage: str | None = None, out_root: str | Path = DEFAULT_OUT_ROOT) -> StudyData:
    """``open_study`` then ``read_study``: the one call the CLIs make."""
    return read_study(open_study(study_name, storage, out_root), storage or default_storage(study_name, out_root))


def config_cells(config: MoLoRAConfig | None, *, grouped: bool = False) -> dict[str, str]:
    """Per-layer text: experts ``2-2-4``, ranks ``2x8 2x8 4,8`` (N x r, or each rank when they differ) and
    routers ``topk2 topk2 dense``; ``grouped`` folds runs of equal layers in ranks and routers:
    ``L0-1: 2x8; L2: 4,8``.

    No ``|`` anywhere, so the cells sit in Markdown tables as they are.
    """
    if config is None:
        return {"experts": "", "ranks": "", "routers": ""}

    def ranks(spec) -> str:
        return f"{spec.n_experts}x{spec.ranks[0]}" if len(set(spec.ranks)) == 1 else ",".join(map(str, spec.ranks))

    def router(spec) -> str:
        r = spec.router
        text = {"topk": f"topk{r.top_k}", "topp": f"topp{r.top_p:g}", "dense": "dense",
                "threshold": "thr" + ("" if r.tau_max is None else f"{r.tau_max:g}")}[r.kind]
        return "off" if spec.disabled else text

    per_layer = {"ranks": [ranks(s) for s in config.layers], "routers": [router(s) for s in config.layers]}
    join = _runs if grouped else " ".join
    return {"experts": "-".join(str(s.n_experts) for s in config.layers),
            **{key: join(values) for key, values in per_layer.items()}}


def _runs(values: list[str]) -> str:
    """``L0-7: a; L8: b`` for consecutive equal per-layer values."""
    out, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            span = f"L{start}" if i - 1 == start else f"L{start}-{i - 1}"
            out.append(f"{span}: {values[start]}")
            start = i
    return "; ".join(out)
