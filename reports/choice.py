"""Which trial ``--trial best|N`` means: one function, so every command (export, search.train) agrees.

It returns the reason with the trial, and the commands print it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .load import StudyData, StudyError, TrialRow


@dataclass(frozen=True)
class Choice:
    """The trial a command uses and, in words, why it was chosen."""

    row: TrialRow
    why: str


def choose_trial(data: StudyData, spec: str, *, max_trainable: float | None = None) -> Choice:
    """The one place that decides what ``--trial best|N`` means (export and ``search.train`` both call it).

    ``best`` = among confirmed searched configs (search.confirm), the highest mean validation accuracy over
    the fresh seeds; without a confirmation, the highest mean validation signal on the noise-aware front;
    for a study without per-question records, the highest validation accuracy on the plain front. Fewer
    trainable parameters break ties, ``max_trainable`` limits every pool; a number is that trial.
    """
    def fits(r: TrialRow) -> bool:
        return max_trainable is None or r.value("trainable") is not None and r.value("trainable") <= max_trainable

    if spec == "best":
        confirmed = _best_confirmed(data, fits)
        if confirmed is not None:
            return confirmed
        candidates = [r for r in data.noise_front if r.config is not None and fits(r)]
        if candidates:
            def mean(r: TrialRow) -> float:
                found = data.config_interval(r)
                return found[0].estimate if found else float("-inf")

            row = max(candidates, key=lambda r: (mean(r), -(r.value("trainable") or 0.0)))
            return Choice(row, f"best: not confirmed (run search.confirm); highest mean validation "
                               f"{data.noise.signal} over its seeds among {len(candidates)} config(s) on the "
                               "noise-aware front")
        candidates = [r for r in data.front if r.config is not None and r.value("accuracy") is not None and fits(r)]
        if not candidates:
            smallest = min((r.value("trainable") for r in data.front if r.value("trainable") is not None), default=None)
            raise StudyError(f"no front member of {data.name!r} has a config and at most {max_trainable:,.0f} "
                             f"trainable params (smallest on the front: {smallest:,.0f})"
                             if max_trainable is not None and smallest is not None
                             else f"no front member of {data.name!r} has a config and an accuracy")
        row = max(candidates, key=lambda r: (r.value("accuracy"), -(r.value("trainable") or 0.0)))
        within = f" with at most {max_trainable:,.0f} trainable params" if max_trainable is not None else ""
        return Choice(row, f"best: highest validation accuracy ({row.value('accuracy'):.4f}) of "
                           f"{len(candidates)} front member(s){within}; fewer trainable params break ties")
    return _by_number(data, spec, fits, max_trainable)


def _best_confirmed(data: StudyData, fits) -> Choice | None:
    """The confirmed searched config with the highest mean *validation* accuracy over its fresh seeds."""
    conf = data.confirmation
    if conf is None:
        return None
    rows = {r.number: r for r in data.rows}
    pool = [c for c in conf.candidates if c.of_trial in rows and fits(rows[c.of_trial])]
    if not pool:
        return None
    best = max(pool, key=lambda c: (float(c.val.mean()), -c.trainable))
    ci = conf.test_interval(best)
    return Choice(rows[best.of_trial], f"best: confirmed; highest mean validation accuracy ({best.val.mean():.4f}) "
                                       f"over {len(best.seeds)} fresh seeds among {len(pool)} confirmed searched "
                                       f"config(s); its test accuracy {ci.estimate:.4f} [{ci.low:.4f}, {ci.high:.4f}]")


def _by_number(data: StudyData, spec: str, fits, max_trainable: float | None) -> Choice:
    try:
        number = int(spec)
    except ValueError:
        raise StudyError(f"--trial must be 'best' or a trial number, got {spec!r}") from None
    row = next((r for r in data.rows if r.number == number), None)
    if row is None:
        raise StudyError(f"study {data.name!r} has no trial {number} (trials 0..{len(data.rows) - 1})")
    if row.state != "COMPLETE" or row.config is None:
        raise StudyError(f"trial {number} is {row.state.lower()}"
                         + ("" if row.config is not None else " and has no config") + "; choose a completed trial")
    if not fits(row):
        raise StudyError(f"trial {number} has {row.value('trainable'):,.0f} trainable params, "
                         f"over --max-trainable {max_trainable:,.0f}")
    return Choice(row, f"trial {number}, as asked")
