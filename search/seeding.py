"""A study ready to run: created or resumed, a stopped run's trials failed, the seeds and then the budget
queued, before any trial is claimed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna
from rich.console import Console

from objectives import DIRECTIONS
from spaces import Space
from spaces.seeds import unequal_totals_note

from .study import SearchInputError, StudyLocation, create_or_resume, fail_interrupted, mark_set_up
from .priors import Prior, queue_with_prior
from .worker import queue_budget


def enqueue_seeds(study: optuna.Study, space: Space, budget: int | None, console: Console, *,
                  repeats: int = 1) -> list[str]:
    """Enqueue each of the space's seeds ``repeats`` times, all once before any twice (the replicate rule
    trains the k-th copy with the next training seed: the study's estimate of seed variance); a resumed
    study keeps the copies it has."""
    present = Counter(t.user_attrs.get("seed_name") for t in study.get_trials(deepcopy=False))
    room = None if budget is None else budget - len(study.get_trials(deepcopy=False))
    added: list[str] = []
    for copy in range(repeats):
        for seed in space.seeds():
            if present[seed.name] > copy:
                continue
            if room is not None and len(added) >= room:
                console.print(f"[yellow]note:[/] budget leaves no room for seed {seed.name} (copy {copy + 1} of "
                              f"{repeats}); raise --budget to run it")
                continue
            study.enqueue_trial(seed.params, user_attrs={"seed_name": seed.name})
            added.append(seed.name)
    return added


def prepare_study(location: StudyLocation, *, objectives: tuple[str, ...], sampler: optuna.samplers.BaseSampler,
                  resume: bool, attrs: dict[str, Any], space: Space, budget: int | None,
                  console: Console, seed_repeats: int = 1, prior: Prior | None = None) -> optuna.Study:
    """Create (or resume) the study, fail a stopped run's trials, queue the seeds and then the budget."""
    study = create_or_resume(location, objectives=objectives, directions=[DIRECTIONS[o] for o in objectives],
                             sampler=sampler, resume=resume, attrs=attrs)
    if resume:
        stored_fidelity = study.user_attrs.get("fidelity")
        if stored_fidelity not in (None, attrs["fidelity"]):
            raise SearchInputError(f"--fidelity/--batch-size/--eval-examples differ from the study's {stored_fidelity};"
                                   " a resumed study keeps its fidelity")
    location.out_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"study [bold]{study.study_name}[/] in {location.storage}\n{space.describe()}")
    interrupted = fail_interrupted(study) if resume else []
    if interrupted:
        console.print(f"trials {interrupted} of a stopped run are marked FAIL (their heartbeat stopped)")
    added = enqueue_seeds(study, space, budget, console, repeats=seed_repeats)
    if added:
        console.print(f"seeds enqueued first: {', '.join(added)}")
        mola = "n_layers" in attrs and any(n.startswith("mola-") for n in added)
        note = unequal_totals_note(attrs["n_layers"]) if mola else None
        if note:
            console.print(f"[yellow]{note}[/]")
    if budget is not None and prior is not None:
        queue_with_prior(study, budget, space, prior, seed=int(attrs.get("seed", 0)))
    elif budget is not None:
        queue_budget(study, budget)
    mark_set_up(study)
    return study
