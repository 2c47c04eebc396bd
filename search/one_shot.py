"""`--evaluator one-shot`: train one elastic super-adapter over the space before the trials, then score each
trial's config inside it instead of training it (issue 20 item 3; docs/one_shot.md).

The super-adapter's layout is the largest expert count and rank the space produces per layer; its sandwich
sub-configs are the space's largest and smallest configs plus random draws of the space itself (``space.sample``
on the trials of a throwaway in-memory study with a seeded ``RandomSampler``), so everything is a function of
the space and ``--seed`` and a resumed training draws what an uninterrupted one would. Its checkpoint lives in
``<study folder>/supernet/``; trials load it once per process and store what every trial stores.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ContextManager

import optuna
from rich.console import Console

from hilo_core import MoLoRAConfig
from hilo_core.elastic import maxima_config
from objectives import Fidelity, Metrics
from objectives.checkpoint import read_checkpoint
from objectives.supernet import Sampler, loaded_supernet, sandwich, score_subconfig, train_supernet
from spaces import Space

from .study import SearchInputError, StudyLocation

EVALUATORS = ("standard", "one-shot")
STEPS_PER_FIDELITY = 5  # default --supernet-steps = 5 x --fidelity (each step trains 4 sub-configs)
POOL_SIZE = 256  # random draws of the space the sandwich picks from (and the maxima are taken over)
N_RANDOM = 2  # random sub-configs per sandwich step, beside the largest and the smallest
CHECKPOINTS = 10  # a killed training loses at most a tenth of its steps
SUPERNET_ATTR = "supernet"  # study attribute: what was trained (steps, sampler, maxima, checkpoint)


def check_one_shot(args: argparse.Namespace) -> None:
    """--evaluator one-shot runs on the Optuna backend without --scheduler or --pruner (nothing to prune or
    promote: a trial trains nothing); sets --supernet-steps' default (STEPS_PER_FIDELITY x --fidelity)."""
    if args.evaluator != "one-shot":
        if args.supernet_steps is not None:
            raise SearchInputError(f"--supernet-steps {args.supernet_steps} needs --evaluator one-shot")
        return
    for flag, value, default in (("--backend", args.backend, "optuna"), ("--scheduler", args.scheduler, "none"),
                                 ("--pruner", args.pruner, "none")):
        if value != default:
            raise SearchInputError(f"--evaluator one-shot scores trials inside one super-adapter without training"
                                   f" them: it runs with --backend optuna, no --scheduler and no --pruner; got"
                                   f" {flag} {value}")
    if args.supernet_steps is None:
        args.supernet_steps = STEPS_PER_FIDELITY * args.fidelity
    # a second copy of a seed rule would score exactly as the first (no training, no seed): no seed variance
    args.seed_repeats = 1
    if args.supernet_steps <= 0:
        raise SearchInputError(f"--supernet-steps must be a positive integer, got {args.supernet_steps}")


def _numeric(choices: tuple[Any, ...]) -> bool:
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)


def _extreme(space: Space, trial: optuna.Trial, pick) -> MoLoRAConfig:
    """``trial``'s config with every numeric parameter moved to ``pick`` of its choices (router kind kept)."""
    params = dict(trial.params)
    for name, dist in trial.distributions.items():
        choices = (tuple(dist.choices) if isinstance(dist, optuna.distributions.CategoricalDistribution)
                   else tuple(range(int(dist.low), int(dist.high) + 1)))
        if _numeric(choices):
            params[name] = pick(choices)
    return space.sample(optuna.trial.FixedTrial(params))


@dataclass(frozen=True)
class SupernetPlan:
    """What the super-adapter is trained over: its layout and the sandwich's sub-configs."""

    maxima: MoLoRAConfig
    largest: MoLoRAConfig
    smallest: MoLoRAConfig
    pool: tuple[MoLoRAConfig, ...]

    def sampler(self) -> Sampler:
        return sandwich(self.largest, self.smallest, self.pool, n_random=N_RANDOM)

    def to_dict(self) -> dict[str, Any]:
        return {"sampler": f"sandwich: largest, smallest and {N_RANDOM} of {len(self.pool)} random draws of the"
                           " space per step",
                "n_max": [s.n_experts for s in self.maxima.layers],
                "r_max": [max(s.ranks) for s in self.maxima.layers]}


def plan_supernet(space: Space, seed: int) -> SupernetPlan:
    """The super-adapter of ``space``: per layer the most experts and the largest rank among the space's
    largest config, its seeds and POOL_SIZE random draws (exact for grouped spaces, whose largest config
    takes every grid's top; AlphaLoRA's per-layer maxima are those of the draws)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trials = [study.ask() for _ in range(POOL_SIZE)]
    pool = [space.sample(trial) for trial in trials]
    largest, smallest = _extreme(space, trials[0], max), _extreme(space, trials[0], min)
    seeds = [space.sample(optuna.trial.FixedTrial(s.params)) for s in space.seeds()]
    every = [largest, smallest, *seeds, *pool]
    n_max = tuple(max(c.layers[i].n_experts for c in every) for i in range(space.n_layers))
    r_max = tuple(max(max(c.layers[i].ranks) for c in every) for i in range(space.n_layers))
    maxima = maxima_config(space.n_layers, n_max=n_max, r_max=r_max, target_modules=largest.target_modules,
                           lora_alpha=largest.lora_alpha, lora_dropout=largest.lora_dropout)
    if [(s.n_experts, max(s.ranks)) for s in largest.layers] != list(zip(n_max, r_max)):
        largest = maxima  # the space's largest config is not the maxima everywhere: train the whole layout
    return SupernetPlan(maxima=maxima, largest=largest, smallest=smallest, pool=tuple(pool))


@dataclass(frozen=True)
class OneShot:
    """Scores trials inside the trained super-adapter at ``checkpoint`` (validation questions only)."""

    checkpoint: Path
    task: Any
    fidelity: Fidelity
    model: str

    def loaded(self) -> ContextManager[MoLoRAConfig]:
        """The super-adapter held by the shared base model while open: loaded once for all trials."""
        return loaded_supernet(self.checkpoint, model=self.model)

    def score(self, trial: optuna.Trial, config: MoLoRAConfig) -> Metrics:
        trial.set_user_attr("evaluator", "one-shot")
        return score_subconfig(config, self.task, self.fidelity, checkpoint=self.checkpoint, model=self.model)


def prepare_one_shot(study: optuna.Study, location: StudyLocation, *, space: Space, task: Any, fidelity: Fidelity,
                     args: argparse.Namespace, console: Console) -> OneShot:
    """Train the super-adapter (or continue a killed training, or reuse a finished one) and record it on the
    study; a checkpoint of another layout or seed is refused by ``train_supernet``."""
    plan = plan_supernet(space, args.seed)
    steps, path = args.supernet_steps, location.out_dir / "supernet" / "supernet.pt"
    done = read_checkpoint(path)[3].step if path.is_file() else 0
    if done > steps:
        raise SearchInputError(f"--supernet-steps {steps}: the super-adapter at {path} has {done} steps already")
    info = {**plan.to_dict(), "steps": steps, "checkpoint": str(path)}
    if done == steps:
        console.print(f"super-adapter: reusing {path} ({steps} steps)")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        console.print(f"super-adapter: {'continuing from step ' + str(done) if done else 'training'} to {steps}"
                      f" steps ({info['sampler']}), up to {max(plan.maxima.experts_per_layer)} experts of rank"
                      f" {max(info['r_max'])} per layer; checkpoint {path}")
        result = train_supernet(plan.maxima, task, replace(fidelity, steps=steps), sampler=plan.sampler(),
                                save_to=path, seed=args.seed, model=args.model,
                                checkpoint_every=max(1, steps // CHECKPOINTS), resume_from=path if done else None,
                                progress=True)
        info.update(seconds=result.seconds, final_loss=result.final_loss)
        console.print(f"super-adapter: {steps} steps in {result.seconds:.0f} s, final loss {result.final_loss:.3f}")
    stored = study.user_attrs.get(SUPERNET_ATTR) or {}
    study.set_user_attr(SUPERNET_ATTR, {**stored, **info})
    return OneShot(checkpoint=path, task=task, fidelity=fidelity, model=args.model)
