"""Export formats: a trial's MoLoRAConfig as hilo JSON, a PEFT LoraConfig, or MoLA-style lists.

- ``hilo``: the trial's ``MoLoRAConfig`` JSON; ``MoLoRAConfig.from_json`` gives back an equal object.
- ``peft``: a folder with ``adapter_config.json`` for ``peft.LoraConfig.from_pretrained``. A single-LoRA
  projection: every adapted module becomes one LoRA of rank ``R = sum of its layer's expert ranks`` (same
  trainable A/B parameters, no router). MoLoRA scales expert i by ``lora_alpha / r_i``; the projection
  keeps that per-direction scale by setting the module's alpha to ``lora_alpha * R / mean(r_i)`` (that is,
  ``lora_alpha * n_experts``), so PEFT's scale ``alpha / R`` equals ``lora_alpha / mean(r_i)`` (exactly each
  expert's scale when a layer's ranks are equal). Router weights are not carried over: it is a layout to
  train, not a weight conversion. Layers marked ``disabled`` are left out of ``target_modules``.
- ``mola``: ``expert_number`` and ``top_k`` comma-separated per-layer lists (and ``lora_r``), the inputs of
  MoLA/AlphaLoRA-style trainers; layers whose router or ranks those trainers cannot express are an error.

``best`` = highest accuracy among front members (fewer trainable parameters breaks ties), optionally only
those with at most ``--max-trainable`` trainable parameters.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hilo_core.config import MoLoRAConfig

from .load import StudyData, StudyError, TrialRow

# Llama/Mistral/Qwen2 module layout: target leaf -> its parent inside ``model.layers.<i>``
LLAMA_LAYOUT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
                "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
FORMATS = ("hilo", "peft", "mola")
# the hub id of the embedded default model (OFFLINE.md), so PEFT users know which base the adapter fits
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def select_trial(data: StudyData, which: str, max_trainable: float | None = None) -> TrialRow:
    """The trial to export: ``best`` on the front (within ``max_trainable``) or a trial number."""
    def fits(r: TrialRow) -> bool:
        return max_trainable is None or r.value("trainable") is not None and r.value("trainable") <= max_trainable

    if which == "best":
        candidates = [r for r in data.front if r.config is not None and r.value("accuracy") is not None and fits(r)]
        if not candidates:
            smallest = min((r.value("trainable") for r in data.front if r.value("trainable") is not None), default=None)
            raise StudyError(f"no front member of {data.name!r} has a config and at most {max_trainable:,.0f} "
                             f"trainable params (smallest on the front: {smallest:,.0f})"
                             if max_trainable is not None and smallest is not None
                             else f"no front member of {data.name!r} has a config and an accuracy")
        return max(candidates, key=lambda r: (r.value("accuracy"), -(r.value("trainable") or 0.0)))
    try:
        number = int(which)
    except ValueError:
        raise StudyError(f"--trial must be 'best' or a trial number, got {which!r}") from None
    row = next((r for r in data.rows if r.number == number), None)
    if row is None:
        raise StudyError(f"study {data.name!r} has no trial {number} (trials 0..{len(data.rows) - 1})")
    if row.state != "COMPLETE" or row.config is None:
        raise StudyError(f"trial {number} is {row.state.lower()}"
                         + ("" if row.config is not None else " and has no config") + "; export a completed trial")
    if not fits(row):
        raise StudyError(f"trial {number} has {row.value('trainable'):,.0f} trainable params, "
                         f"over --max-trainable {max_trainable:,.0f}")
    return row


def to_hilo(config: MoLoRAConfig) -> str:
    return config.to_json(indent=2) + "\n"


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


def peft_config(config: MoLoRAConfig, paths: list[tuple[int, str]], base_model: str | None = None):
    """A ``peft.LoraConfig``: the single-LoRA projection described in this module's docstring."""
    from peft import LoraConfig

    enabled = [(i, p) for i, p in paths if not config.layers[i].disabled]
    if not enabled:
        raise StudyError("every layer of this config is disabled: there is nothing to export to PEFT")
    ranks = {p: config.layers[i].total_rank for i, p in enabled}
    alphas = {p: config.lora_alpha * config.layers[i].n_experts for i, p in enabled}
    r, _ = Counter(ranks.values()).most_common(1)[0]
    alpha, _ = Counter(alphas[p] for p in ranks if ranks[p] == r).most_common(1)[0]
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=config.lora_dropout, bias="none",
                      task_type="CAUSAL_LM", target_modules=[p for _, p in enabled],
                      rank_pattern=ranks, alpha_pattern=alphas, base_model_name_or_path=base_model)


def to_mola(config: MoLoRAConfig) -> str:
    """Per-layer ``expert_number``, ``top_k`` and ``lora_r`` lists, one ``key=a,b,c`` line each."""
    top_k, ranks = [], []
    for i, spec in enumerate(config.layers):
        if spec.disabled:
            raise StudyError(f"layer {i} is disabled; MoLA-style lists cannot express a layer without experts")
        if len(set(spec.ranks)) != 1:
            raise StudyError(f"layer {i} has unequal expert ranks {spec.ranks}; MoLA-style trainers take one "
                             "rank per layer (export --to hilo or --to peft instead)")
        kind = spec.router.kind
        if kind not in ("topk", "dense") and spec.n_experts > 1:
            raise StudyError(f"layer {i} uses router {kind!r}; MoLA-style trainers route top-k only "
                             "(export --to hilo instead)")
        top_k.append(spec.router.top_k if kind == "topk" else spec.n_experts)
        ranks.append(spec.ranks[0])
    return "".join(f"{key}={','.join(map(str, values))}\n" for key, values in
                   (("expert_number", config.experts_per_layer), ("top_k", top_k), ("lora_r", ranks)))


def export(data: StudyData, row: TrialRow, fmt: str, out: Path, base_model: str | None = None) -> Path:
    """Write ``row``'s config in format ``fmt`` to ``out`` (a file; a folder for ``peft``)."""
    config = row.config
    if fmt == "peft":
        paths = model_module_paths(config, base_model) if base_model else llama_module_paths(config)
        model = base_model or data.attrs.get("model")
        peft_config(config, paths, EMBEDDED_HUB_ID if model == "default" else model).save_pretrained(str(out))
        return out / "adapter_config.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_hilo(config) if fmt == "hilo" else to_mola(config))
    return out
