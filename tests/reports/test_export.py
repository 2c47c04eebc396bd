"""reports.export: every format parses back to the exported config, refusals name the layer, PEFT weights are exact.

References: the trainers' own parsing (MoLA splits each list on commas, one value per layer; MoE-PEFT's
``check()`` type asserts; AdaMoLE's argparse with ``fromfile_prefix_chars='@'``), PEFT's own
``PeftModel.from_pretrained`` for the weights.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex

import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from hilo_core import LayerSpec, MoLoRAConfig, RouterSpec, inject, save_adapters
from reports import export
from reports.choice import choose_trial
from reports.formats import TrainSettings, adamole_flags, collapse, mola_lists, to_moe_peft, to_mola
from reports.load import StudyError, load
from reports.peft_format import (
    LLAMA_LAYOUT, adapter_paths, llama_module_paths, model_module_paths, peft_config, write_peft,
)
from tiny_models import tiny_llama

SETTINGS = TrainSettings(base_model="tiny-llama", task="polarity")


def run(out_root, *args, study="tiny") -> int:
    return export.main(["--study", study, "--out-root", str(out_root), *args])


def random_mola_config(rng: random.Random, n_layers: int) -> MoLoRAConfig:
    """Top-k layers with one rank each (what MoLA can express), random counts, ranks and k."""
    layers = []
    for _ in range(n_layers):
        n = rng.randint(1, 8)
        router = RouterSpec(kind="topk", top_k=rng.randint(1, n)) if n > 1 else RouterSpec(kind="dense")
        layers.append(LayerSpec(ranks=(rng.choice([1, 2, 4, 8, 16]),) * n, router=router))
    return MoLoRAConfig(layers=tuple(layers), lora_alpha=float(rng.choice([8, 16, 32])), lora_dropout=0.1)


def flags_of(script: str, program: str) -> dict[str, str]:
    """The ``--flag value`` pairs of the command running ``program`` in a shell script."""
    command = next(c for c in script.replace("\\\n", " ").splitlines() if c.startswith(f"python {program}"))
    words = shlex.split(command)[2:]
    return {words[i][2:]: words[i + 1] for i in range(0, len(words) - 1) if words[i].startswith("--")
            and not words[i + 1].startswith("--")}


def from_mola_flags(flags: dict[str, str], n_layers: int) -> MoLoRAConfig:
    """Rebuild a config the way mola_training.py reads its flags: split on commas, one value per layer."""
    experts, top_k, ranks = ([int(v) for v in flags[k].split(",")] for k in ("number_experts", "top_k", "lora_r"))
    assert len(experts) == len(top_k) == len(ranks) == n_layers
    layers = tuple(LayerSpec(ranks=(r,) * n, router=RouterSpec(kind="topk", top_k=k) if n > 1 else RouterSpec(kind="dense"))
                   for n, k, r in zip(experts, top_k, ranks))
    return MoLoRAConfig(layers=layers, target_modules=tuple(flags["lora_target_modules"].split(",")),
                        lora_alpha=float(flags["lora_alpha"]), lora_dropout=float(flags["lora_dropout"]))


def test_best_is_highest_accuracy_on_front_within_budget(tiny_study, out_root):
    data = load("tiny", out_root=out_root)
    best = choose_trial(data, "best")
    assert best.row.number == 3 and "not confirmed" in best.why and "noise-aware front" in best.why  # 0.66
    budget = data.rows[3].value("trainable") - 1
    assert choose_trial(data, "best", max_trainable=budget).row.number == 2  # only the uniform seed is smaller
    with pytest.raises(StudyError, match="at most 1,000 trainable params \\(smallest on the front: 29,696\\)"):
        choose_trial(data, "best", max_trainable=1000)
    with pytest.raises(StudyError, match="trial 5 is fail; choose a completed trial"):
        choose_trial(data, "5")
    with pytest.raises(StudyError, match="has no trial 42"):
        choose_trial(data, "42")
    assert choose_trial(data, "4").why == "trial 4, as asked"


def test_best_prefers_confirmed_trials_and_decides_on_validation(tiny_study, out_root):
    """A confirmation in which trial 8 beats trial 3 on validation (and trial 3 wins on test): best is 8."""
    import optuna

    from objectives.records import QuestionRecords

    def rec(k):
        return QuestionRecords(np.arange(50) < k, np.full(50, 0.5, dtype=np.float32), "f").encode()

    url = f"sqlite:///{out_root}/tiny/study.db"
    conf = optuna.create_study(study_name="tiny.confirm", storage=url, directions=["maximize"])
    trials = {t.number: t for t in tiny_study.get_trials()}
    for of_trial, role, val, test in ((3, "candidate", 30, 40), (8, "candidate", 35, 30), (0, "rule", 30, 30)):
        m = trials[of_trial].user_attrs["metrics"]
        for seed in (1000, 1001):
            conf.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[val / 50],
                           user_attrs={"config": trials[of_trial].user_attrs["config"], "train_seed": seed,
                                       "role": role, "of_trial": of_trial, "label": f"t{of_trial}", "metrics": m,
                                       "val_records": rec(val), "test_records": rec(test)}))
    best = choose_trial(load("tiny", out_root=out_root), "best")
    assert best.row.number == 8 and best.why.startswith("best: confirmed") and "2 fresh seeds" in best.why


def test_hilo_export_round_trips_bit_identically(tiny_study, out_root, trial_specs, capsys):
    out = out_root / "best.json"
    assert run(out_root, "--trial", "best", "--to", "hilo", "--out", str(out)) == 0
    assert "trial 3 [best: " in capsys.readouterr().out  # the reason is printed (reports.choice)
    stored = tiny_study.trials[3].user_attrs["config"]
    again = MoLoRAConfig.from_json(out.read_text())
    assert again == trial_specs[3]["config"] and again.to_json() == stored


def test_mola_lists_parse_back_to_the_config(tiny_study, out_root, trial_specs):
    out = out_root / "mola.sh"
    assert run(out_root, "--trial", "1", "--to", "mola", "--out", str(out)) == 0
    script = out.read_text()
    train, evaluate = flags_of(script, "mola_training.py"), flags_of(script, "evaluation_scienceqa.py")
    assert from_mola_flags(train, 4) == trial_specs[1]["config"]  # hilo-rule: experts 2,4,6,8 of ranks 2,4,6,8
    assert train["base_model"] == "tiny-llama" and train["lora_alpha"] == "16" and "--obalance" in script
    for key in ("number_experts", "top_k", "lora_target_modules", "base_model"):  # evaluation repeats them
        assert evaluate[key] == train[key]
    assert evaluate["mola_weights"] == train["output_dir"]
    rng = random.Random(0)
    for _ in range(20):
        config = random_mola_config(rng, rng.randint(1, 12))
        assert from_mola_flags(flags_of(to_mola(config, SETTINGS, name="t"), "mola_training.py"),
                               config.n_layers) == config


def test_mola_refusals_name_the_layer():
    base = MoLoRAConfig.uniform(4, 2, 8)
    cases = {1: (LayerSpec(ranks=(2, 8)), "layer 1 has unequal expert ranks (2, 8)"),
             2: (LayerSpec(ranks=(8, 8), disabled=True), "layer 2 is disabled"),
             3: (LayerSpec(ranks=(8, 8), router=RouterSpec(kind="topp")), "layer 3 uses router 'topp'")}
    for i, (spec, message) in cases.items():
        layers = list(base.layers)
        layers[i] = spec
        with pytest.raises(StudyError, match=message.replace("(", "\\(").replace(")", "\\)")):
            mola_lists(MoLoRAConfig(layers=tuple(layers)))
    with pytest.raises(StudyError, match="target_modules \\['c_attn'\\]"):
        mola_lists(MoLoRAConfig.uniform(2, 2, 8, target_modules=("c_attn",)))


def check_like_moe_peft(entry: dict) -> None:
    """The type checks of MoE-PEFT's LoraConfig.check / MolaConfig.check on one ``lora`` entry."""
    assert isinstance(entry["r"], int) and entry["r"] > 0
    assert isinstance(entry["lora_alpha"], int) and entry["lora_alpha"] > 0
    assert isinstance(entry["lora_dropout"], float) and entry["lora_dropout"] >= 0
    assert all(isinstance(v, bool) for v in entry["target_modules"].values())
    if "routing_strategy" in entry:
        assert entry["routing_strategy"] == "mola"
        assert isinstance(entry["top_k"], int) and 0 < entry["top_k"] <= entry["num_experts"]
        assert isinstance(entry["router_aux_loss_coef"], float) and isinstance(entry["router_loss"], bool)


def from_moe_peft(entry: dict, n_layers: int) -> MoLoRAConfig:
    n = entry.get("num_experts", 1)
    router = RouterSpec(kind="topk", top_k=entry["top_k"]) if n > 1 else RouterSpec(kind="dense")
    return MoLoRAConfig.uniform(n_layers, n, entry["r"], router=router, lora_alpha=float(entry["lora_alpha"]),
                                lora_dropout=entry["lora_dropout"],
                                target_modules=tuple(t for t, on in entry["target_modules"].items() if on))


@pytest.mark.parametrize("n_experts,rank,router", [(1, 8, None), (4, 4, RouterSpec(kind="topk", top_k=2)),
                                                   (3, 16, RouterSpec(kind="topk", top_k=3))])
def test_moe_peft_round_trips_homogeneous_configs(n_experts, rank, router):
    config = MoLoRAConfig.uniform(6, n_experts, rank, router=router, target_modules=("q_proj", "v_proj", "down_proj"))
    top = json.loads(to_moe_peft(config, SETTINGS, name="trial 3"))
    entry, = top["lora"]
    check_like_moe_peft(entry)
    assert from_moe_peft(entry, 6) == config and entry["name"] == "trial_3"
    assert ("routing_strategy" in entry) == (n_experts > 1)
    dense = MoLoRAConfig.uniform(6, 3, 8, router=RouterSpec(kind="dense"))  # softmax over all = top-k with k = N
    assert json.loads(to_moe_peft(dense, SETTINGS, name="d"))["lora"][0]["top_k"] == 3


def test_moe_peft_refuses_heterogeneous_and_collapse_says_what_changed(tiny_study, out_root, capsys):
    assert run(out_root, "--trial", "1", "--to", "moe-peft") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reports.export: layer 1 has 4 expert(s) of rank 4") and "--collapse" in err
    out = out_root / "collapsed.json"
    assert run(out_root, "--trial", "1", "--to", "moe-peft", "--collapse", "--out", str(out)) == 0
    lines = capsys.readouterr().out.splitlines()
    change = [line for line in lines if line.startswith("--collapse:")]
    # mean expert count 5, mean expert rank 6: the summed rank, 120 = 2*2 + 4*4 + 6*6 + 8*8, is kept (4 * 5 * 6)
    assert len(change) == 1 and "every layer now 5 expert(s) of rank 6" in change[0] and "was experts 2-4-6-8" in change[0]
    entry, = json.loads(out.read_text())["lora"]
    check_like_moe_peft(entry)
    assert (entry["num_experts"], entry["r"], entry["top_k"]) == (5, 6, 2)


def test_collapse_of_a_homogeneous_config_changes_nothing():
    config = MoLoRAConfig.uniform(4, 4, 8, router=RouterSpec(kind="threshold"))
    assert collapse(config, "adamole")[0] == config


def adamole_parser() -> argparse.ArgumentParser:
    """The flags of AdaMoLE's train.py that a config sets, parsed as it parses them (``@file``)."""
    p = argparse.ArgumentParser(fromfile_prefix_chars="@")
    for name, kind in (("model_path", str), ("data_path", str), ("peft_type", str), ("lora_rank", int),
                       ("num_experts", int), ("top_k", int), ("threshold", float), ("max_length", int),
                       ("batch_size", int), ("gradient_accumulation_steps", int), ("learning_rate", float),
                       ("aux_loss_coeff", float)):
        p.add_argument(f"--{name}", type=kind, default=None)
    p.add_argument("--target_modules", nargs="+", default=["q_proj", "v_proj"])
    return p


@pytest.mark.parametrize("n_experts,rank,router", [(1, 8, None), (4, 8, RouterSpec(kind="threshold")),
                                                   (8, 4, RouterSpec(kind="threshold", tau_max=0.1)),
                                                   (4, 2, RouterSpec(kind="topk", top_k=2))])
def test_adamole_round_trips_homogeneous_configs(n_experts, rank, router, tmp_path):
    config = MoLoRAConfig.uniform(5, n_experts, rank, router=router, target_modules=("q_proj", "k_proj", "o_proj"))
    train, test = adamole_flags(config, SETTINGS)
    (tmp_path / "train.config").write_text("\n".join(train) + "\n")
    args = adamole_parser().parse_args([f"@{tmp_path / 'train.config'}"])
    rank_per_expert = args.lora_rank if args.peft_type == "lora" else args.lora_rank // args.num_experts  # train.py
    kind = {"lora": "dense", "mole": "topk", "adamole": "threshold"}[args.peft_type]
    again_router = RouterSpec(kind=kind, top_k=args.top_k or 2,
                              tau_max=None if kind != "threshold" or args.threshold == 1 / n_experts else args.threshold)
    again = MoLoRAConfig.uniform(5, args.num_experts, rank_per_expert, router=again_router,
                                 target_modules=tuple(args.target_modules), lora_alpha=16.0, lora_dropout=0.05)
    assert again == config
    assert args.aux_loss_coeff == SETTINGS.aux_weight and test[0].startswith("--model_path=outputs/tiny-llama-")


def test_adamole_refuses_what_its_train_script_fixes():
    with pytest.raises(StudyError, match="lora_alpha 32.0: AdaMoLE's train.py fixes it at 16"):
        adamole_flags(MoLoRAConfig.uniform(2, 2, 8, lora_alpha=32.0), SETTINGS)
    with pytest.raises(StudyError, match="layer 0 uses router 'topp'"):
        adamole_flags(MoLoRAConfig.uniform(2, 2, 8, router=RouterSpec(kind="topp")), SETTINGS)
    assert adamole_flags(collapse(MoLoRAConfig.uniform(2, 2, 8, lora_alpha=32.0), "adamole")[0], SETTINGS)


def test_peft_refuses_routed_experts_unless_projected(tiny_study, out_root, trial_specs, capsys):
    assert run(out_root, "--trial", "8", "--to", "peft") == 2
    assert "layer 0 has 2 routed experts" in capsys.readouterr().err
    out = out_root / "peft8"
    assert run(out_root, "--trial", "8", "--to", "peft", "--projection", "same-trainable", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "--projection same-trainable: 3 multi-expert layer(s)" in printed and "lost: the routers" in printed
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["base_model_name_or_path"] == "tiny-llama"
    config = trial_specs[8]["config"]  # ranks (2, 8) | (4, 4, 4) | disabled | (6, 6)
    model = get_peft_model(tiny_llama(config.n_layers), LoraConfig.from_pretrained(str(out)))
    for i, spec in enumerate(config.layers):
        for target in config.target_modules:
            module = model.base_model.model.get_submodule(f"model.layers.{i}.{LLAMA_LAYOUT[target]}.{target}")
            if spec.disabled:
                assert not hasattr(module, "lora_A"), f"layer {i} is disabled but got a LoRA"
                continue
            assert module.r["default"] == spec.total_rank == module.lora_A["default"].out_features
            assert module.scaling["default"] == pytest.approx(config.lora_alpha * spec.n_experts / spec.total_rank)
    # same-active: a top-k layer keeps the rank a token uses; threshold/top-p layers cannot be sized
    assert run(out_root, "--trial", "8", "--to", "peft", "--projection", "same-active") == 2
    assert "layer 0 routes by 'threshold'" in capsys.readouterr().err
    top2 = MoLoRAConfig.uniform(4, 4, 4, router=RouterSpec(kind="topk", top_k=2))  # a token uses 2 experts of rank 4
    active = peft_config(top2, llama_module_paths(top2), projection="same-active")
    assert active.r == 8 and active.lora_alpha == pytest.approx(top2.lora_alpha * 8 / 4)
    assert peft_config(top2, llama_module_paths(top2), projection="same-trainable").r == 16


def test_module_paths_read_from_a_model_match_the_llama_layout(trial_specs, tmp_path):
    config = trial_specs[3]["config"]
    tiny_llama(config.n_layers).config.save_pretrained(tmp_path / "base")
    assert sorted(model_module_paths(config, str(tmp_path / "base"))) == sorted(llama_module_paths(config))


def single_expert_config(n_layers: int, seed: int, disabled: int | None = None) -> MoLoRAConfig:
    rng = random.Random(seed)
    return MoLoRAConfig(layers=tuple(LayerSpec(ranks=(rng.choice([1, 2, 4, 8]),), router=RouterSpec(kind="dense"),
                                               disabled=i == disabled) for i in range(n_layers)),
                        lora_alpha=float(rng.choice([8, 16, 24])))


def trained_like(model, config: MoLoRAConfig, seed: int):
    """``model`` with ``config`` injected and every adapter tensor random (B too, so the adapters matter)."""
    inject(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.05)
    return model.eval()


def peft_logits_match(make_base, config: MoLoRAConfig, tmp_path, ids: torch.Tensor, *, base_model: str) -> float:
    hilo = trained_like(make_base(), config, seed=1)
    save_adapters(hilo, tmp_path / "adapters")
    paths, tensors = adapter_paths(tmp_path / "adapters", config)
    write_peft(config, paths, tmp_path / "peft", base_model=base_model, tensors=tensors)
    peft_model = PeftModel.from_pretrained(make_base(), str(tmp_path / "peft")).eval()
    with torch.no_grad():
        want, got = hilo(ids).logits, peft_model(ids).logits
        bare = make_base()(ids).logits
    assert (want - bare).abs().max() > 1e-3, "the adapters must change the logits for the check to mean anything"
    return float((want - got).abs().max())


def test_peft_weights_reproduce_the_logits_on_a_tiny_llama(tmp_path):
    config = single_expert_config(4, seed=0, disabled=2)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    assert peft_logits_match(lambda: tiny_llama(4), config, tmp_path, ids, base_model="tiny-llama") <= 1e-5


def test_peft_weights_export_through_the_cli(tmp_path, make_study):
    config = single_expert_config(4, seed=3)
    out_root = tmp_path / "out"
    make_study(out_root, "one", [dict(config=config, accuracy=0.5)])
    save_adapters(trained_like(tiny_llama(4), config, seed=2), tmp_path / "adapters")
    assert run(out_root, "--trial", "0", "--to", "peft", "--adapters", str(tmp_path / "adapters"),
               "--out", str(tmp_path / "peft"), study="one") == 0
    assert (tmp_path / "peft" / "adapter_model.safetensors").is_file()
    other = single_expert_config(4, seed=4)
    save_adapters(trained_like(tiny_llama(4), other, seed=2), tmp_path / "other")
    assert run(out_root, "--trial", "0", "--to", "peft", "--adapters", str(tmp_path / "other"), study="one") == 2


@pytest.mark.slow
def test_peft_weights_reproduce_the_logits_on_the_embedded_model(tmp_path):
    from hilo_core.models import load_model

    model, tokenizer = load_model("default")
    config = single_expert_config(model.config.num_hidden_layers, seed=5, disabled=7)
    ids = tokenizer(["The capital of France is", "Two plus two makes"], return_tensors="pt", padding=True).input_ids
    assert peft_logits_match(lambda: load_model("default")[0], config, tmp_path, ids,
                             base_model="HuggingFaceTB/SmolLM2-135M-Instruct") <= 1e-5


def test_export_refusals_are_one_line(tiny_study, out_root, capsys):
    assert run(out_root, "--trial", "8", "--to", "mola") == 2  # threshold router, unequal ranks
    assert run(out_root, "--trial", "7", "--to", "hilo") == 2  # pruned
    assert run(out_root, "--trial", "best", "--max-trainable", "10", "--to", "peft") == 2
    assert run(out_root, "--trial", "3", "--to", "hilo", "--collapse") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("reports.export: ") for line in lines)
    assert "layer 0 has unequal expert ranks (2, 8)" in lines[0] and "--collapse applies to" in lines[3]
