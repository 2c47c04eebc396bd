"""PEFT export: a ``LoraConfig`` with ``rank_pattern``/``alpha_pattern`` and, from saved adapters, its weights.

A layer with one expert is plain LoRA: ``W0 x + lora_alpha / r * B A x``, PEFT's formula with the module's
``alpha = lora_alpha`` and ``r = r``; config and weights are exact. PEFT has no routed mixture, so a layer with
several experts is refused unless a projection is asked for, and the CLI prints what it loses:

- ``same-trainable``: one LoRA of rank ``R = sum r_i`` (the experts' A/B parameter count), routers dropped;
- ``same-active``: one LoRA of the rank a token uses, ``k * mean(r_i)`` for top-k (all of it for dense).

Either keeps the per-direction scale ``lora_alpha / mean(r_i)`` (module alpha ``lora_alpha * R / mean(r_i)``).
A projection is a layout to train: routed experts have no exact single-LoRA weights, so weights are
exported only for configs whose enabled layers have one expert. Disabled layers are left out.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hilo_core.config import LayerSpec, MoLoRAConfig
from hilo_core.io import CONFIG_FILE, WEIGHTS_FILE

from .load import StudyError

PROJECTIONS = ("same-trainable", "same-active")
# Llama/Mistral/Qwen2 module layout: target leaf -> its parent inside ``model.layers.<i>``
LLAMA_LAYOUT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
                "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
PEFT_WEIGHTS = "adapter_model.safetensors"


def llama_module_paths(config: MoLoRAConfig) -> list[tuple[int, str]]:
    """``(layer, full module path)`` for a Llama-layout model, e.g. ``model.layers.3.self_attn.q_proj``."""
    unknown = [t for t in config.target_modules if t not in LLAMA_LAYOUT]
    if unknown:
        raise StudyError(f"target_modules {unknown} are not Llama module names {sorted(LLAMA_LAYOUT)}; "
                         "pass --base-model to read the module paths from the model")
    return [(i, f"model.layers.{i}.{LLAMA_LAYOUT[t]}.{t}") for i in range(config.n_layers)
            for t in config.target_modules]


def model_module_paths(config: MoLoRAConfig, base_model: str) -> list[tuple[int, str]]:
    """``(layer, full module path)`` read from ``base_model`` built on the meta device (no weights loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from hilo_core.inject import find_decoder_layers
    from hilo_core.models import resolve_model

    try:
        model_config = AutoConfig.from_pretrained(resolve_model(base_model))
    except (OSError, ValueError, ImportError) as err:
        raise StudyError(f"--base-model {base_model!r}: cannot read its config: {err}") from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    prefix, blocks = find_decoder_layers(model)
    if len(blocks) != config.n_layers:
        raise StudyError(f"--base-model {base_model!r} has {len(blocks)} layers, the config {config.n_layers}")
    return [(i, f"{prefix}.{i}.{path}") for i, block in enumerate(blocks)
            for path, _ in block.named_modules() if path.rsplit(".", 1)[-1] in config.target_modules]


def projected_rank(i: int, spec: LayerSpec, projection: str | None) -> int:
    """The single-LoRA rank of layer ``i`` (exact for one expert); refuses a layer the projection cannot map."""
    if spec.n_experts == 1:
        return spec.ranks[0]
    if projection is None:
        raise StudyError(f"layer {i} has {spec.n_experts} routed experts; PEFT LoRA has no routed mixture: pass "
                         "--projection same-trainable|same-active, or export --to mola|moe-peft|adamole|hilo")
    if projection == "same-trainable" or spec.router.kind == "dense":
        return spec.total_rank
    if spec.router.kind == "topk":
        return max(1, round(spec.router.top_k * spec.total_rank / spec.n_experts))
    raise StudyError(f"layer {i} routes by {spec.router.kind!r}: its active rank depends on the data, so "
                     "--projection same-active cannot size it (use same-trainable)")


def projection_note(config: MoLoRAConfig, projection: str | None) -> str | None:
    """One line saying what the projection loses, or None when every enabled layer has one expert."""
    multi = [i for i, s in enumerate(config.layers) if not s.disabled and s.n_experts > 1]
    if not multi:
        return None
    before = sum(config.layers[i].total_rank for i in multi)
    after = sum(projected_rank(i, config.layers[i], projection) for i in multi)
    kept = ("the experts' trainable A/B parameters (every one now active for every token)"
            if projection == "same-trainable" else "the rank a token uses (every one now trained and active)")
    return (f"--projection {projection}: {len(multi)} multi-expert layer(s) (first: {multi[0]}) become one LoRA "
            f"each; kept: {kept}; lost: the routers and the per-token choice of experts; summed rank of those "
            f"layers per target {before} -> {after}")


def peft_config(config: MoLoRAConfig, paths: list[tuple[int, str]], base_model: str | None = None,
                projection: str | None = None):
    """A ``peft.LoraConfig`` for ``config`` on the modules ``paths``: exact per-module ranks and alphas."""
    from peft import LoraConfig

    enabled = [(i, p) for i, p in paths if not config.layers[i].disabled]
    if not enabled:
        raise StudyError("every layer of this config is disabled: there is nothing to export to PEFT")
    ranks, alphas = {}, {}
    for i, p in enabled:
        spec = config.layers[i]
        ranks[p] = projected_rank(i, spec, projection)
        alphas[p] = config.lora_alpha * ranks[p] * spec.n_experts / spec.total_rank
    r, _ = Counter(ranks.values()).most_common(1)[0]
    alpha, _ = Counter(alphas[p] for p in ranks if ranks[p] == r).most_common(1)[0]
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=config.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=[p for _, p in enabled],
                      rank_pattern=ranks, alpha_pattern=alphas, base_model_name_or_path=base_model)


def module_layer(path: str) -> int | None:
    """The layer index in a module path: its first all-digit component (``model.layers.3.mlp.up_proj``)."""
    return next((int(part) for part in path.split(".") if part.isdigit()), None)


def adapter_paths(folder: Path, config: MoLoRAConfig) -> tuple[list[tuple[int, str]], dict]:
    """``(layer, module path)`` of every adapted module in a ``save_adapters`` folder, and its tensors.

    The folder must hold ``config`` itself: weights of another config would load into the wrong shapes.
    """
    from safetensors.torch import load_file

    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise StudyError(f"--adapters {folder}: no {name} (a folder written by hilo_core.save_adapters "
                             "or python -m search.train)")
    try:
        saved = MoLoRAConfig.from_json((folder / CONFIG_FILE).read_text())
    except ValueError as err:
        raise StudyError(f"--adapters {folder}: {CONFIG_FILE} is not a MoLoRAConfig: {err}") from None
    if saved != config:
        raise StudyError(f"--adapters {folder} holds a different config than the trial's "
                         f"(experts {saved.experts_per_layer} vs {config.experts_per_layer})")
    tensors = load_file(str(folder / WEIGHTS_FILE))
    modules = sorted({key.rsplit(".", 1)[0] for key in tensors if key.endswith(".lora_A")})
    paths = []
    for path in modules:
        layer = module_layer(path)
        if layer is None or layer >= config.n_layers:
            raise StudyError(f"--adapters {folder}: module {path} has no layer index below {config.n_layers}")
        paths.append((layer, path))
    return paths, tensors


def write_peft(config: MoLoRAConfig, paths: list[tuple[int, str]], out: Path, *, base_model: str | None,
               projection: str | None = None, tensors: dict | None = None) -> Path:
    """``adapter_config.json`` (and, given adapter ``tensors``, ``adapter_model.safetensors``) in ``out``."""
    lora = peft_config(config, paths, base_model, projection)
    weights = None
    if tensors is not None:
        multi = next((i for i, s in enumerate(config.layers) if not s.disabled and s.n_experts > 1), None)
        if multi is not None:
            raise StudyError(f"layer {multi} has {config.layers[multi].n_experts} routed experts: no single LoRA "
                             "has their weights, so --adapters exports only one-expert configs (a projection is "
                             "a layout to train)")
        # PEFT's saved keys: base_model.model.<module path>.lora_{A,B}.weight (no adapter name)
        weights = {f"base_model.model.{p}.{part}.weight": tensors[f"{p}.{part}"].contiguous()
                   for i, p in paths if not config.layers[i].disabled for part in ("lora_A", "lora_B")}
    lora.save_pretrained(str(out))
    if weights is not None:
        from safetensors.torch import save_file

        save_file(weights, str(out / PEFT_WEIGHTS), metadata={"format": "pt"})
    return out / "adapter_config.json"


