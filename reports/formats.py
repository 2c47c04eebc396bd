"""Text exports of a trial's MoLoRAConfig for other trainers, each checked against what that trainer accepts.

- ``hilo``: the ``MoLoRAConfig`` JSON; ``MoLoRAConfig.from_json`` gives back an equal object.
- ``mola``: a shell script for GCYZSL/MoLA (and AlphaLoRA, which shares its flags): ``mola_training.py``
  and ``evaluation_scienceqa.py`` with ``--number_experts``, ``--top_k`` and ``--lora_r``, one value per
  layer. MoLA keeps no lists in its checkpoint, so the evaluation line repeats them. MoLA routes top-k
  (softmax, top k, renormalised; a dense layer is top-k with k = N) with one rank per layer, scales each
  expert by ``lora_alpha / r`` and adapts every layer: other layers are refused, naming the layer.
- ``moe-peft``: a TUDB-Labs MoE-PEFT JSON config. Its ``mola`` routing strategy is hilo's per-projection
  top-k router; ``mixlora``/``loramoe`` route once per FFN block or only on MLP projections, so they are
  not used. One expert count, rank and router for the whole model; ``r`` and ``lora_alpha`` are integers.
- ``adamole``: zefang-liu/AdaMoLE ``@flag`` files: ``--peft_type lora|mole|adamole``, ``--num_experts``,
  ``--lora_rank`` = the *total* rank (AdaMoLE splits it evenly), ``--top_k`` or ``--threshold``; its
  train.py fixes ``lora_alpha=16`` and ``lora_dropout=0.05``.

The last two take homogeneous configs only; ``collapse`` writes the nearest homogeneous one and says, in
one line, what it changed. PEFT (``rank_pattern``, weights) is in ``reports.peft_format``.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from hilo_core.config import LayerSpec, MoLoRAConfig, RouterSpec

from .load import StudyData, StudyError, config_cells

# the hub id of the embedded default model, so other trainers know which base the config fits
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MOLA_TARGETS = ("q_proj", "v_proj", "k_proj", "o_proj", "gate_proj", "down_proj", "up_proj")
# moe_peft/common/config.py ``lora_target_modules`` (LLaMA, Phi, Phi3, GLM names)
MOE_PEFT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj", "dense", "fc1",
                    "fc2", "qkv_proj", "gate_up_proj", "dense_h_to_4h", "dense_4h_to_h")
# hilo task names that MoE-PEFT's task_dict trains and evaluates by itself (moe_peft/tasks/qa_tasks.py)
MOE_PEFT_TASKS = ("arc-e", "arc-c", "boolq", "obqa", "piqa", "csqa")
ADAMOLE_ALPHA, ADAMOLE_DROPOUT = 16, 0.05  # AdaMoLE train.py hard-codes both
ADAMOLE_DATA = {"csqa": "tau/commonsense_qa"}  # the dataset ids AdaMoLE's data.py formats that hilo also has


@dataclass(frozen=True)
class TrainSettings:
    """What the trainers' command lines take from the study: the base model and hilo's fine-tune settings."""

    base_model: str
    task: str = ""
    lr: float = 1e-3
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 128
    aux_weight: float = 0.01

    @classmethod
    def from_study(cls, data: StudyData, base_model: str | None = None) -> "TrainSettings":
        model = base_model or data.attrs.get("model") or "BASE_MODEL"
        stored = data.attrs.get("fidelity") or {}
        known = {f.name for f in fields(cls)}
        return cls(base_model=EMBEDDED_HUB_ID if model == "default" else model, task=str(data.attrs.get("task", "")),
                   **{k: v for k, v in stored.items() if k in known and k not in ("base_model", "task")})


def to_hilo(config: MoLoRAConfig) -> str:
    return config.to_json(indent=2) + "\n"


def _plain_alpha(config: MoLoRAConfig) -> int | float:
    """``16`` rather than ``16.0`` on a command line when alpha is a whole number."""
    return int(config.lora_alpha) if float(config.lora_alpha).is_integer() else config.lora_alpha


def mola_lists(config: MoLoRAConfig) -> dict[str, list[int]]:
    """``number_experts``, ``top_k`` and ``lora_r``, one value per layer; refuses what MoLA cannot express."""
    odd = [t for t in config.target_modules if t not in MOLA_TARGETS]
    if odd:
        raise StudyError(f"target_modules {odd}: MoLA adapts only {','.join(MOLA_TARGETS)} (Llama names)")
    experts, top_k, ranks = [], [], []
    for i, spec in enumerate(config.layers):
        if spec.disabled:
            raise StudyError(f"layer {i} is disabled; MoLA adapts every layer (export --to hilo instead)")
        if len(set(spec.ranks)) != 1:
            raise StudyError(f"layer {i} has unequal expert ranks {spec.ranks}; MoLA takes one rank per layer "
                             "(export --to hilo instead)")
        kind = spec.router.kind
        if kind not in ("topk", "dense") and spec.n_experts > 1:
            raise StudyError(f"layer {i} uses router {kind!r}; MoLA routes top-k only (export --to adamole "
                             "or --to hilo instead)")
        experts.append(spec.n_experts)
        top_k.append(spec.router.top_k if kind == "topk" and spec.n_experts > 1 else spec.n_experts)
        ranks.append(spec.ranks[0])
    return {"number_experts": experts, "top_k": top_k, "lora_r": ranks}


def to_mola(config: MoLoRAConfig, settings: TrainSettings, *, name: str) -> str:
    """A shell script: MoLA's training and evaluation commands with this config's per-layer lists."""
    lists = {k: ",".join(map(str, v)) for k, v in mola_lists(config).items()}
    targets = ",".join(config.target_modules)
    q = shlex.quote
    out = f"./{name}-mola"
    train = [("base_model", settings.base_model), ("data_path", "$DATA"), ("output_dir", out),
             ("batch_size", settings.batch_size * settings.grad_accum), ("micro_batch_size", settings.batch_size),
             ("cutoff_len", settings.max_length), ("lora_r", lists["lora_r"]),
             ("lora_alpha", _plain_alpha(config)), ("lora_dropout", config.lora_dropout),
             ("lora_target_modules", targets), ("number_experts", lists["number_experts"]),
             ("top_k", lists["top_k"])]
    evaluate = [("test_dataset", "$TEST"), ("base_model", settings.base_model), ("mola_weights", out),
                ("lora_target_modules", targets), ("number_experts", lists["number_experts"]),
                ("top_k", lists["top_k"]), ("save_path", f"./{name}-mola-test.json")]

    def command(script: str, flags: list[tuple[str, Any]], extra: str = "") -> str:
        parts = [f"  --{k} " + (f'"{v}"' if str(v).startswith("$") else q(str(v))) for k, v in flags]
        return f"python {script} \\\n" + " \\\n".join(parts) + extra + "\n"

    balance = " \\\n  --obalance" if settings.aux_weight > 0 else ""  # MoLA's switch for its balance loss
    return (f"# {name}: {config.n_layers} layers for GCYZSL/MoLA (AlphaLoRA's scripts take the same flags).\n"
            "# Run from a MoLA checkout. MoLA stores no lists in its checkpoint: evaluate with the same ones.\n"
            "# Its scripts load LlamaForCausalLM_d and LlamaTokenizer: a Llama-architecture base (for a base\n"
            "# without a sentencepiece tokenizer, e.g. SmolLM2, use AutoTokenizer in their two scripts).\n"
            "DATA=./data.hf    # your training set: a datasets folder with instruction/input/output columns\n"
            "TEST=./test.json  # your test set in MoLA's evaluation format\n"
            + command("mola_training.py", train, balance) + command("evaluation_scienceqa.py", evaluate))


def _router_key(spec: LayerSpec) -> tuple:
    """What a layer's router computes: one expert needs none; top-k over all N experts is dense."""
    r, n = spec.router, spec.n_experts
    if n == 1:
        return ("single",)
    if r.kind == "dense" or (r.kind == "topk" and r.top_k == n):
        return ("dense",)
    if r.kind == "topk":
        return ("topk", r.top_k)
    if r.kind == "threshold":
        return ("threshold", r.tau_max if r.tau_max is not None else 1.0 / n)
    return ("topp", r.top_p)


def _describe(spec: LayerSpec) -> str:
    ranks = f"rank {spec.ranks[0]}" if len(set(spec.ranks)) == 1 else f"ranks {spec.ranks}"
    return f"{spec.n_experts} expert(s) of {ranks}" + ("" if spec.n_experts == 1 else
                                                       f" (router {config_cells(_one(spec))['routers']})")


def _one(spec: LayerSpec) -> MoLoRAConfig:
    return MoLoRAConfig(layers=(spec,))


def homogeneous_layer(config: MoLoRAConfig, fmt: str) -> LayerSpec:
    """The one layer spec every layer shares, or an error naming the first layer that differs."""
    hint = f"{fmt} takes one expert count, rank and router for the whole model (pass --collapse for the " \
           "nearest homogeneous config)"
    first = config.layers[0]
    for i, spec in enumerate(config.layers):
        if spec.disabled:
            raise StudyError(f"layer {i} is disabled; {fmt} adapts every layer ({hint})")
        if len(set(spec.ranks)) != 1:
            raise StudyError(f"layer {i} has unequal expert ranks {spec.ranks}; {hint}")
        if (spec.n_experts, spec.ranks[0], _router_key(spec)) != (first.n_experts, first.ranks[0], _router_key(first)):
            raise StudyError(f"layer {i} has {_describe(spec)}, layer 0 has {_describe(first)}; {hint}")
    return first


def collapse(config: MoLoRAConfig, fmt: str) -> tuple[MoLoRAConfig, str]:
    """The nearest homogeneous config (mean expert count and expert rank, most common router) and one line
    saying what changed; routers ``fmt`` cannot express become top-k."""
    enabled = [s for s in config.layers if not s.disabled] or list(config.layers)
    n = max(1, round(sum(s.n_experts for s in enabled) / len(enabled)))
    all_ranks = [r for s in enabled for r in s.ranks]
    rank = max(1, round(sum(all_ranks) / len(all_ranks)))
    routed = [s.router for s in enabled if s.n_experts > 1] or [RouterSpec(kind="topk", top_k=2)]
    router = Counter(routed).most_common(1)[0][0]
    allowed = {"moe-peft": ("topk", "dense"), "adamole": ("topk", "dense", "threshold")}[fmt]
    if router.kind not in allowed:
        router = RouterSpec(kind="topk", top_k=2)
    router = replace(router, top_k=min(router.top_k, n),
                     tau_max=None if router.tau_max is None or router.tau_max > 1.0 / n else router.tau_max)
    if n == 1:
        router = RouterSpec(kind="dense")
    extra: dict[str, Any] = {}
    if fmt == "adamole":
        extra = {"lora_alpha": float(ADAMOLE_ALPHA), "lora_dropout": ADAMOLE_DROPOUT}
    elif not float(config.lora_alpha).is_integer():
        extra = {"lora_alpha": float(round(config.lora_alpha))}
    spec = LayerSpec(ranks=(rank,) * n, router=router)
    new = replace(config, layers=(spec,) * config.n_layers, **extra)
    was = config_cells(config, grouped=True)
    changes = [f"every layer now {_describe(spec)}", f"was experts {was['experts']}, ranks {was['ranks']}, "
               f"routers {was['routers']}"]
    changes += [f"{k} {getattr(config, k)} -> {v}" for k, v in extra.items() if getattr(config, k) != v]
    return new, "--collapse: " + "; ".join(changes)


def _training_entry(settings: TrainSettings) -> dict[str, Any]:
    """The training fields of one MoE-PEFT ``lora`` entry, from hilo's fine-tune settings."""
    data = ({"task_name": settings.task} if settings.task in MOE_PEFT_TASKS
            else {"task_name": "casual", "data": "DATA.json", "prompt": "alpaca"})
    return {**data, "optim": "adamw", "scheduler_type": "constant", "warmup_steps": 0, "lr": settings.lr,
            "batch_size": settings.batch_size * settings.grad_accum, "micro_batch_size": settings.batch_size,
            "evaluate_batch_size": 16, "num_epochs": 1, "group_by_length": False}


def to_moe_peft(config: MoLoRAConfig, settings: TrainSettings, *, name: str) -> str:
    """A MoE-PEFT JSON config (``python moe_peft.py --base_model M --config FILE``) for a homogeneous config."""
    spec = homogeneous_layer(config, "moe-peft")
    odd = [t for t in config.target_modules if t not in MOE_PEFT_TARGETS]
    if odd:
        raise StudyError(f"target_modules {odd} are not MoE-PEFT module names {list(MOE_PEFT_TARGETS)}")
    key = _router_key(spec)
    if key[0] in ("threshold", "topp"):
        raise StudyError(f"layer 0 uses router {spec.router.kind!r}; MoE-PEFT routes each projection top-k only "
                         "(--collapse makes it top-k; --to adamole keeps threshold routing)")
    if not float(config.lora_alpha).is_integer():
        raise StudyError(f"lora_alpha {config.lora_alpha}: MoE-PEFT takes an integer lora_alpha (--collapse rounds it)")
    entry: dict[str, Any] = {"name": re.sub(r"\W", "_", name), **_training_entry(settings), "r": spec.ranks[0],
                             "lora_alpha": int(config.lora_alpha), "lora_dropout": float(config.lora_dropout),
                             "target_modules": {t: t in config.target_modules for t in MOE_PEFT_TARGETS[:7]}
                             | {t: True for t in config.target_modules}}
    if key[0] != "single":
        entry.update(routing_strategy="mola", num_experts=spec.n_experts,
                     top_k=spec.n_experts if key[0] == "dense" else key[1],
                     router_loss=settings.aux_weight > 0, router_aux_loss_coef=float(settings.aux_weight))
    top = {"cutoff_len": settings.max_length, "save_step": 1000, "train_lora_candidate_num": 1,
           "train_lora_simultaneously_num": 1, "train_strategy": "optim", "lora": [entry]}
    return json.dumps(top, indent=4) + "\n"


def adamole_flags(config: MoLoRAConfig, settings: TrainSettings) -> tuple[list[str], list[str]]:
    """AdaMoLE ``train.py`` and ``test.py`` argument lists (one argument per line in an ``@`` file)."""
    spec = homogeneous_layer(config, "adamole")
    for field_name, fixed in (("lora_alpha", ADAMOLE_ALPHA), ("lora_dropout", ADAMOLE_DROPOUT)):
        if getattr(config, field_name) != fixed:
            raise StudyError(f"{field_name} {getattr(config, field_name)}: AdaMoLE's train.py fixes it at {fixed} "
                             "(--collapse sets it)")
    key, n = _router_key(spec), spec.n_experts
    if key[0] == "topp":
        raise StudyError("layer 0 uses router 'topp'; AdaMoLE routes top-k (mole) or by threshold (adamole) "
                         "(--collapse makes it top-k)")
    peft_type = {"single": "lora", "dense": "mole", "topk": "mole", "threshold": "adamole"}[key[0]]
    # train.py's output folder is outputs/<model>-<peft type>[-top<k>][-the<1/threshold>]-<data>
    if key[0] == "threshold":
        routing, suffix = [f"--threshold={key[1]!r}"], f"-the{int(1 / key[1])}"
    elif key[0] in ("dense", "topk"):
        k = n if key[0] == "dense" else key[1]
        routing, suffix = [f"--top_k={k}"], f"-top{k}"
    else:
        routing, suffix = [], ""
    data_path = ADAMOLE_DATA.get(settings.task, "DATA")
    train = [f"--model_path={settings.base_model}", f"--data_path={data_path}", f"--peft_type={peft_type}",
             f"--lora_rank={spec.total_rank}", "--target_modules", *config.target_modules, f"--num_experts={n}",
             *routing, f"--max_length={settings.max_length}", f"--batch_size={settings.batch_size}",
             f"--gradient_accumulation_steps={settings.grad_accum}", f"--learning_rate={settings.lr:g}",
             f"--aux_loss_coeff={settings.aux_weight:g}"]
    run = f"{Path(settings.base_model).name.lower()}-{peft_type}{suffix}-{Path(data_path).name.lower()}"
    test = [f"--model_path=outputs/{re.sub(r'[^0-9a-zA-Z]', '-', run)}", f"--data_path={data_path}", "--logits"]
    return train, test


def write_adamole(config: MoLoRAConfig, settings: TrainSettings, out: Path) -> list[Path]:
    """``train.config`` and ``test.config`` in folder ``out`` (``python train.py @train.config``)."""
    train, test = adamole_flags(config, settings)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "train.config", out / "test.config"]
    for path, flags in zip(paths, (train, test)):
        path.write_text("\n".join(flags) + "\n")
    return paths
