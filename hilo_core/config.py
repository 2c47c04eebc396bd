"""MoLoRAConfig: the one object that crosses every boundary (spaces -> hilo_core -> reports).

Frozen, validated in ``__post_init__``, and round-trips through JSON exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

ROUTER_KINDS = ("dense", "topk", "threshold", "topp")
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RouterSpec:
    """How a layer mixes its experts: dense softmax, top-k (MoLA), threshold (AdaMoLE) or top-p."""

    kind: str = field(default="topk", metadata={"help": f"one of {ROUTER_KINDS}"})
    top_k: int = field(default=2, metadata={"help": "experts kept per token (kind='topk')"})
    tau_max: float | None = field(
        default=None, metadata={"help": "threshold ceiling in (0, 1] (kind='threshold'); None = 1/N"}
    )
    top_p: float = field(default=0.75, metadata={"help": "cumulative probability to reach (kind='topp')"})

    def __post_init__(self) -> None:
        if self.kind not in ROUTER_KINDS:
            raise ValueError(f"router.kind must be one of {ROUTER_KINDS}, got {self.kind!r}")
        if not _is_int(self.top_k) or self.top_k < 1:
            raise ValueError(f"router.top_k must be a positive integer, got {self.top_k!r}")
        if self.tau_max is not None and not (
            isinstance(self.tau_max, (int, float)) and 0.0 < self.tau_max <= 1.0
        ):
            raise ValueError(f"router.tau_max must lie in (0, 1] or be None, got {self.tau_max!r}")
        if not (isinstance(self.top_p, (int, float)) and 0.0 < self.top_p <= 1.0):
            raise ValueError(f"router.top_p must lie in (0, 1], got {self.top_p!r}")


@dataclass(frozen=True)
class LayerSpec:
    """One transformer layer's experts: ``len(ranks)`` experts, expert i of rank ``ranks[i]``."""

    ranks: tuple[int, ...] = field(metadata={"help": "rank of each expert; ranks may differ"})
    router: RouterSpec = field(default_factory=RouterSpec, metadata={"help": "expert mixing rule"})
    disabled: bool = field(default=False, metadata={"help": "adapter off: the base output exactly"})

    def __post_init__(self) -> None:
        if isinstance(self.ranks, list):
            object.__setattr__(self, "ranks", tuple(self.ranks))
        if not isinstance(self.ranks, tuple) or len(self.ranks) == 0:
            raise ValueError(f"ranks must be a non-empty tuple of positive integers, got {self.ranks!r}")
        if not all(_is_int(r) and r > 0 for r in self.ranks):
            raise ValueError(f"ranks must be positive integers, got {self.ranks!r}")
        if not isinstance(self.router, RouterSpec):
            raise ValueError(f"router must be a RouterSpec, got {type(self.router).__name__}")
        if self.router.kind == "topk" and self.router.top_k > self.n_experts:
            raise ValueError(
                f"router.top_k must be <= number of experts {self.n_experts}, got {self.router.top_k}"
            )
        if self.router.kind == "threshold" and self.router.tau_max is not None:
            if self.router.tau_max > 1.0 / self.n_experts + 1e-12:
                raise ValueError(
                    f"router.tau_max must be <= 1/N = {1.0 / self.n_experts:.4g} so that one expert is"
                    f" always active, got {self.router.tau_max}"
                )

    @property
    def n_experts(self) -> int:
        return len(self.ranks)

    @property
    def total_rank(self) -> int:
        return sum(self.ranks)


@dataclass(frozen=True)
class MoLoRAConfig:
    """Per-layer mixture-of-LoRA-experts layout for one model: what hilo searches over."""

    layers: tuple[LayerSpec, ...] = field(metadata={"help": "one spec per transformer layer, in order"})
    target_modules: tuple[str, ...] = field(
        default=LLAMA_TARGETS, metadata={"help": "linear names (last path component) to adapt in each layer"}
    )
    lora_alpha: float = field(default=16.0, metadata={"help": "expert i is scaled by lora_alpha / r_i"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the adapter input, in [0, 1)"})

    def __post_init__(self) -> None:
        for name in ("layers", "target_modules"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if not self.layers:
            raise ValueError("layers must hold at least one LayerSpec, got ()")
        for i, spec in enumerate(self.layers):
            if not isinstance(spec, LayerSpec):
                raise ValueError(f"layers[{i}] must be a LayerSpec, got {type(spec).__name__}")
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            raise ValueError(f"target_modules must be non-empty strings, got {self.target_modules!r}")
        if len(set(self.target_modules)) != len(self.target_modules):
            raise ValueError(f"target_modules has duplicates: {self.target_modules!r}")
        if not (isinstance(self.lora_alpha, (int, float)) and math.isfinite(self.lora_alpha)
                and self.lora_alpha > 0):
            raise ValueError(f"lora_alpha must be a positive finite number, got {self.lora_alpha!r}")
        if not (isinstance(self.lora_dropout, (int, float)) and 0.0 <= self.lora_dropout < 1.0):
            raise ValueError(f"lora_dropout must lie in [0, 1), got {self.lora_dropout!r}")

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def experts_per_layer(self) -> tuple[int, ...]:
        return tuple(s.n_experts for s in self.layers)

    @property
    def total_experts(self) -> int:
        return sum(self.experts_per_layer)

    @classmethod
    def uniform(
        cls,
        n_layers: int,
        n_experts: int,
        rank: int,
        *,
        router: RouterSpec | None = None,
        target_modules: tuple[str, ...] = LLAMA_TARGETS,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.05,
    ) -> "MoLoRAConfig":
        """The same ``n_experts`` experts of rank ``rank`` in every layer."""
        if not _is_int(n_layers) or n_layers < 1:
            raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
        if not _is_int(n_experts) or n_experts < 1:
            raise ValueError(f"n_experts must be a positive integer, got {n_experts!r}")
        if router is None:
            router = RouterSpec(kind="dense") if n_experts == 1 else RouterSpec(kind="topk", top_k=min(2, n_experts))
        spec = LayerSpec(ranks=(rank,) * n_experts, router=router)
        return cls(layers=(spec,) * n_layers, target_modules=tuple(target_modules),
                   lora_alpha=lora_alpha, lora_dropout=lora_dropout)

    @classmethod
    def from_experts(
        cls,
        experts: tuple[int, ...] | list[int],
        ranks: int | tuple[int, ...] | list[int],
        *,
        router: RouterSpec | None = None,
        **kwargs: Any,
    ) -> "MoLoRAConfig":
        """Per-layer expert counts (MoLA-style lists) with one rank per layer or one for all."""
        experts = tuple(experts)
        per_layer = (ranks,) * len(experts) if _is_int(ranks) else tuple(ranks)
        if len(per_layer) != len(experts):
            raise ValueError(f"ranks has {len(per_layer)} entries for {len(experts)} layers")
        layers = []
        for i, (n, r) in enumerate(zip(experts, per_layer)):
            if not _is_int(n) or n < 1:
                raise ValueError(f"layer {i}: n_experts must be a positive integer, got {n!r}")
            spec_router = router or RouterSpec(kind="topk", top_k=2)
            if spec_router.kind == "topk" and spec_router.top_k > n:
                spec_router = replace(spec_router, top_k=n)
            layers.append(LayerSpec(ranks=(r,) * n, router=spec_router))
        return cls(layers=tuple(layers), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MoLoRAConfig":
        """Inverse of ``to_dict``; unknown keys are errors so typos never pass silently."""
        if not isinstance(data, Mapping):
            raise ValueError(f"MoLoRAConfig data must be a mapping, got {type(data).__name__}")
        _check_keys("MoLoRAConfig", data, {"layers", "target_modules", "lora_alpha", "lora_dropout"})
        if "layers" not in data or not isinstance(data["layers"], (list, tuple)):
            raise ValueError("MoLoRAConfig.layers must be a list of layer specs")
        layers = []
        for i, layer in enumerate(data["layers"]):
            if not isinstance(layer, Mapping):
                raise ValueError(f"layers[{i}] must be a mapping, got {type(layer).__name__}")
            _check_keys(f"layers[{i}]", layer, {"ranks", "router", "disabled"})
            router = layer.get("router", {})
            if not isinstance(router, Mapping):
                raise ValueError(f"layers[{i}].router must be a mapping, got {type(router).__name__}")
            _check_keys(f"layers[{i}].router", router, {"kind", "top_k", "tau_max", "top_p"})
            ranks = layer.get("ranks")
            if not isinstance(ranks, (list, tuple)):
                raise ValueError(f"layers[{i}].ranks must be a list of positive integers, got {ranks!r}")
            try:
                layers.append(LayerSpec(ranks=tuple(ranks), router=RouterSpec(**router),
                                        disabled=bool(layer.get("disabled", False))))
            except ValueError as err:
                raise ValueError(f"layer {i}: {err}") from None
        kwargs = {k: data[k] for k in ("lora_alpha", "lora_dropout") if k in data}
        if "target_modules" in data:
            targets = data["target_modules"]
            if not isinstance(targets, (list, tuple)):
                raise ValueError(f"target_modules must be a list of strings, got {targets!r}")
            kwargs["target_modules"] = tuple(targets)
        return cls(layers=tuple(layers), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "MoLoRAConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"MoLoRAConfig JSON is malformed: {err}") from None
        return cls.from_dict(data)


def _check_keys(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")
