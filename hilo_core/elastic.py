"""Elastic MoLoRA: one super-adapter per linear that holds every sub-config of up to ``n_max`` experts of rank
up to ``r_max``, so sub-configs are scored without training each one.

Expert i owns rows ``i * r_max .. (i + 1) * r_max`` of the stacked ``A (n_max * r_max, d_in)`` and those
columns of ``B``. A sub-config (a ``LayerSpec`` with ranks ``r_0..r_{n-1}``) uses experts ``0..n-1`` and the
first ``r_i`` rows of each (LoNAS / Shears' elastic ranks ``A[:r]``, ``B[:, :r]``, with elastic expert counts
added), and its router is the sub-config's kind over gate rows ``0..n-1``: the softmax runs over the active
experts only. With a sub-config active the layer computes exactly what a ``MoLoRALinear`` of that spec
holding the sliced weights computes (same router code, same kernels): ``export_subconfig`` gives those.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import save_file
from torch import nn
from torch.func import functional_call

from .accounting import router_param_count
from .config import LLAMA_TARGETS, LayerSpec, MoLoRAConfig, RouterSpec
from .inject import _CONFIG_ATTR, ELASTIC_ATTR, find_decoder_layers, wrap_targets
from .io import CONFIG_FILE, WEIGHTS_FILE
from .layers import MoLoRALinear
from .routers import RouterOutput, build_router


def misfit(spec: LayerSpec, *, n_max: int, r_max: int) -> str | None:
    """Why ``spec`` does not fit a layer of ``n_max`` experts of rank <= ``r_max`` (field, value, allowed), or None."""
    if spec.n_experts > n_max:
        return f"n_experts: got {spec.n_experts}, the super-adapter allows 1..{n_max}"
    for i, r in enumerate(spec.ranks):
        if r > r_max:
            return f"ranks[{i}]: got {r}, the super-adapter allows 1..{r_max}"
    return None


@functools.lru_cache(maxsize=4096)
def active_rows(ranks: tuple[int, ...], r_max: int, device: torch.device) -> torch.Tensor | None:
    """Rows of the super ``A`` that experts of ``ranks`` use, in order; None when they are ``A[:sum(ranks)]``.

    A prefix is sliced (a view); any other set is gathered once per forward: ``R x d_in``, small next to the
    ``(tokens, d_in) x (d_in, R)`` GEMM it feeds.
    """
    rows = [i * r_max + j for i, r in enumerate(ranks) for j in range(r)]
    if rows == list(range(len(rows))):
        return None
    return torch.tensor(rows, dtype=torch.long, device=device)


@functools.lru_cache(maxsize=1024)
def _router_code(spec: RouterSpec, n_experts: int, d_in: int, dtype: torch.dtype) -> nn.Module:
    """The standalone router of ``spec`` over ``n_experts``, built on the meta device: code, no weights.

    ``functional_call`` runs it on the super-adapter's gate rows, so routing is the standalone router's own.
    """
    with torch.device("meta"):
        return build_router(spec, d_in=d_in, n_experts=n_experts, dtype=dtype)


class ElasticMoLoRALinear(MoLoRALinear):
    """A ``MoLoRALinear`` over ``n_max`` experts of rank ``r_max`` that computes one active sub-config.

    Its ``adapter_params()`` are the whole super-adapter (the gate of ``n_max`` rows and AdaMoLE's threshold
    head, so every router kind can be a sub-config's); ``spec``, ``ranks``, ``disabled`` and ``lora_dropout``
    are the active sub-config's, so activity counts and the balance loss are over its active experts.
    """

    def __init__(self, base_layer: nn.Module, *, max_spec: LayerSpec, lora_alpha: float,
                 lora_dropout: float = 0.0) -> None:
        self.n_max, self.r_max = max_spec.n_experts, max(max_spec.ranks)  # reset_adapter reads them
        hull = LayerSpec(ranks=(self.r_max,) * self.n_max, router=RouterSpec(kind="threshold"))
        super().__init__(base_layer, spec=hull, lora_alpha=lora_alpha, lora_dropout=lora_dropout)
        self.max_spec = max_spec
        self.set_subconfig(max_spec, lora_dropout=lora_dropout)

    def reset_adapter(self) -> None:
        """Each expert's whole ``r_max`` block as a standalone expert's A (Kaiming-uniform), B zero."""
        for block in self.lora_A.split(self.r_max):
            nn.init.kaiming_uniform_(block, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def set_subconfig(self, spec: LayerSpec, *, lora_dropout: float) -> None:
        """Make ``spec`` the active sub-config: no weight is copied, only which rows and router are used.

        Raises:
            ValueError: ``spec`` needs more experts or a larger rank than the super-adapter holds.
        """
        problem = misfit(spec, n_max=self.n_max, r_max=self.r_max)
        if problem is not None:
            raise ValueError(problem)
        self.spec, self.ranks, self.disabled = spec, spec.ranks, spec.disabled
        self.lora_dropout = float(lora_dropout)
        self.aux_loss = None  # the last sub-config's graph: a disabled layer must not hand it on

    def route(self, tokens: torch.Tensor) -> RouterOutput:
        n = self.spec.n_experts
        code = _router_code(self.spec.router, n, self.d_in, self.lora_A.dtype)
        if n == 1:
            return code(tokens)
        return functional_call(code, self._router_weights(self.spec), (tokens,))

    def _router_weights(self, spec: LayerSpec) -> dict[str, torch.Tensor]:
        """``spec``'s router tensors by their standalone names: gate rows ``0..n-1`` (+ threshold head)."""
        weights = {"gate.weight": self.router.gate.weight[:spec.n_experts]}
        if spec.router.kind == "threshold":
            weights.update({"threshold.weight": self.router.threshold.weight,
                            "threshold.bias": self.router.threshold.bias})
        return weights

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = active_rows(self.ranks, self.r_max, self.lora_A.device)
        if rows is None:
            total = sum(self.ranks)
            return self.lora_A[:total], self.lora_B[:, :total]
        return self.lora_A.index_select(0, rows), self.lora_B.index_select(1, rows)

    @torch.no_grad()
    def sliced_state(self, spec: LayerSpec) -> dict[str, torch.Tensor]:
        """``spec``'s weights as a standalone ``MoLoRALinear`` names them in ``adapter_params()`` (copies)."""
        problem = misfit(spec, n_max=self.n_max, r_max=self.r_max)
        if problem is not None:
            raise ValueError(problem)
        rows = active_rows(spec.ranks, self.r_max, self.lora_A.device)
        rows = torch.arange(spec.total_rank, device=self.lora_A.device) if rows is None else rows
        state = {"lora_A": self.lora_A[rows], "lora_B": self.lora_B[:, rows]}
        if spec.n_experts > 1:
            state.update({f"router.{k}": v for k, v in self._router_weights(spec).items()})
        return {k: v.contiguous() for k, v in state.items()}

    def router_param_count(self) -> int:
        """The active router's parameters (``count_active`` counts the sub-config, not the super-adapter)."""
        return router_param_count(self.spec, self.d_in)

    def extra_repr(self) -> str:
        return f"n_max={self.n_max}, r_max={self.r_max}, active: " + super().extra_repr()


def maxima_config(n_layers: int, *, n_max: int | tuple[int, ...], r_max: int | tuple[int, ...],
                  router: RouterSpec | None = None, target_modules: tuple[str, ...] = LLAMA_TARGETS,
                  lora_alpha: float = 16.0, lora_dropout: float = 0.05) -> MoLoRAConfig:
    """The super-adapter's layout from ``n_max`` / ``r_max`` (one for all layers or one per layer).

    Its layers are also the largest sub-config (``router`` defaults to top-2, top-1 where ``n_max`` is 1).
    """
    experts = (n_max,) * n_layers if isinstance(n_max, int) else tuple(n_max)
    if len(experts) != n_layers:
        raise ValueError(f"n_max has {len(experts)} entries for {n_layers} layers")
    return MoLoRAConfig.from_experts(experts, r_max, router=router, target_modules=tuple(target_modules),
                                     lora_alpha=lora_alpha, lora_dropout=lora_dropout)


def inject_elastic(model: nn.Module, maxima: MoLoRAConfig) -> nn.Module:
    """Wrap the targets of layer i with an elastic layer of ``maxima.layers[i].n_experts`` experts of rank
    ``max(maxima.layers[i].ranks)``; ``maxima`` itself is the active sub-config until ``set_subconfig``.

    Raises as ``inject`` does; ``eject`` takes the super-adapter out again.
    """
    wrap_targets(model, maxima, lambda module, spec: ElasticMoLoRALinear(
        module, max_spec=spec, lora_alpha=maxima.lora_alpha, lora_dropout=maxima.lora_dropout))
    setattr(model, ELASTIC_ATTR, maxima)
    return model


def elastic_maxima(model: nn.Module) -> MoLoRAConfig:
    """The layout ``inject_elastic`` was given.

    Raises:
        ValueError: the model holds no elastic super-adapter.
    """
    maxima = getattr(model, ELASTIC_ATTR, None)
    if maxima is None:
        raise ValueError("model has no elastic super-adapter: call hilo_core.inject_elastic first")
    return maxima


def _layers(model: nn.Module) -> Iterator[tuple[int, ElasticMoLoRALinear]]:
    _, blocks = find_decoder_layers(model)
    for i, block in enumerate(blocks):
        for module in block.modules():
            if isinstance(module, ElasticMoLoRALinear):
                yield i, module


def check_fits(model: nn.Module, config: MoLoRAConfig) -> None:
    """Refuse a sub-config the super-adapter cannot compute, in one line naming layer, field, value, allowed.

    Raises:
        ValueError: another layer count, other target modules or lora_alpha (the weights were trained with
            its ``alpha / r`` scales), more experts than ``n_max`` or a rank above ``r_max`` in some layer.
    """
    if not isinstance(config, MoLoRAConfig):
        raise TypeError(f"config must be a MoLoRAConfig, got {type(config).__name__}")
    maxima = elastic_maxima(model)
    if config.n_layers != maxima.n_layers:
        raise ValueError(f"n_layers: got {config.n_layers} layer specs, the super-adapter has {maxima.n_layers}")
    if set(config.target_modules) != set(maxima.target_modules):
        raise ValueError(f"target_modules: got {list(config.target_modules)}, the super-adapter adapts "
                         f"{list(maxima.target_modules)}")
    if config.lora_alpha != maxima.lora_alpha:
        raise ValueError(f"lora_alpha: got {config.lora_alpha}, the super-adapter was built with {maxima.lora_alpha}")
    for i, spec in enumerate(config.layers):
        limit = maxima.layers[i]
        problem = misfit(spec, n_max=limit.n_experts, r_max=max(limit.ranks))
        if problem is not None:
            raise ValueError(f"layer {i}: {problem}")


def set_subconfig(model: nn.Module, config: MoLoRAConfig) -> nn.Module:
    """Make ``config`` the active sub-config of every elastic layer: no weight copy; all checked first."""
    check_fits(model, config)
    for i, module in _layers(model):
        module.set_subconfig(config.layers[i], lora_dropout=config.lora_dropout)
    setattr(model, _CONFIG_ATTR, config)
    return model


def export_subconfig(model: nn.Module, config: MoLoRAConfig | None = None
                     ) -> tuple[MoLoRAConfig, dict[str, torch.Tensor]]:
    """``config`` (the active sub-config when None) and its sliced weights as a standalone model holds them.

    The state dict is keyed ``<module path>.<adapter param>`` (``hilo_core.io``'s names, which are also the
    model's ``state_dict`` keys): after ``inject(bare_model, config)``, ``bare_model.load_state_dict(state,
    strict=False)`` gives the sub-config's outputs exactly, a warm start for standalone training.
    """
    config = getattr(model, _CONFIG_ATTR) if config is None else config
    check_fits(model, config)
    layer_of = {id(m): i for i, m in _layers(model)}
    state = {f"{name}.{k}": v for name, m in model.named_modules() if id(m) in layer_of
             for k, v in m.sliced_state(config.layers[layer_of[id(m)]]).items()}
    return config, state


def save_subconfig(model: nn.Module, path: str | Path, config: MoLoRAConfig | None = None) -> Path:
    """Write ``export_subconfig``'s config and weights as ``save_adapters`` does: ``load_adapters`` reads them."""
    config, state = export_subconfig(model, config)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(config.to_json(indent=2))
    save_file(state, str(folder / WEIGHTS_FILE))
    return folder
