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

    ``best`` = highest validation accuracy on the Pareto front (fewer trainable parameters breaks ties),
    within ``max_trainable`` when given; a number is that trial, which must have completed.
    """
    def fits(r: TrialRow) -> bool:
        return max_trainable is None or r.value("trainable") is not None and r.value("trainable") <= max_trainable

    if spec == "best":
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
