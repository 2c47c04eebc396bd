"""Expert priors for the first trials (PriorBand / PriMO style): sample near a published rule with a
probability that decays over the budget, off by default.

"Near" a prior config: each of its trial parameters is kept with probability ``keep`` and the others are left
to the sampler (Optuna samples the parameters an enqueued trial does not fix). The spaces encode profiles as
relative steps, so any mix of kept and sampled parameters is a valid config. The draws are decided when the
budget is queued, seeded by (search seed, trial number), so a run and its resumption queue the same trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna

from spaces import Space

PRIORS = ("none", "rules", "alphalora")
PRIOR_ATTR = "prior"  # trial attribute: the prior config a queued trial was drawn near


@dataclass(frozen=True)
class Prior:
    """Which configs are priors, over how many sampled trials their probability falls from 1 to 0, and the
    probability of keeping each of a prior's parameters."""

    kind: str
    decay: int
    keep: float = 0.7

    def __post_init__(self) -> None:
        if self.kind not in PRIORS[1:]:
            raise ValueError(f"--prior must be one of {list(PRIORS)}, got {self.kind!r}")
        if not (isinstance(self.decay, int) and self.decay > 0):
            raise ValueError(f"--prior-decay must be a positive number of trials, got {self.decay!r}")
        if not 0 < self.keep <= 1:
            raise ValueError(f"--prior-keep must be in (0, 1], got {self.keep!r}")

    def probability(self, index: int) -> float:
        """Chance that the ``index``-th sampled trial (0-based, after the seeds) is drawn near a prior."""
        return max(0.0, 1.0 - index / self.decay)


def prior_configs(space: Space, kind: str) -> list[tuple[str, dict]]:
    """``(name, params)`` of the prior configs: every seed rule the space holds, or AlphaLoRA's allocation."""
    seeds = [(s.name, s.params) for s in space.seeds()]
    chosen = seeds if kind == "rules" else [(n, p) for n, p in seeds if n == "alphalora"]
    if not chosen:
        raise ValueError(f"--prior {kind}: the space has no {'seed rule' if kind == 'rules' else 'alphalora seed'}")
    return chosen


def queue_with_prior(study: optuna.Study, budget: int, space: Space, prior: Prior, seed: int) -> int:
    """Queue the rest of ``budget`` like ``queue_budget``, each trial drawn near a prior with the decaying
    probability (else empty: the sampler's own); returns how many were queued."""
    trials = study.get_trials(deepcopy=False)
    sampled = sum(1 for t in trials if "seed_name" not in t.user_attrs)  # trials after the seed rules so far
    configs = prior_configs(space, prior.kind)
    for number in range(len(trials), budget):
        index = sampled + number - len(trials)
        rng = np.random.default_rng([seed, number])
        if rng.random() < prior.probability(index):
            name, params = configs[int(rng.integers(len(configs)))]
            kept = {k: v for k, v in sorted(params.items()) if rng.random() < prior.keep}
            study.enqueue_trial(kept, user_attrs={PRIOR_ATTR: name})
        else:
            study.enqueue_trial({})
    return max(0, budget - len(trials))
