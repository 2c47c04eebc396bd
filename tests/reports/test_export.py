"""reports.export: hilo JSON round-trips, PEFT configs apply to the same base model, MoLA lists match."""

from __future__ import annotations

import json

import pytest
from peft import LoraConfig, get_peft_model

from hilo_core import MoLoRAConfig
from reports import export
from reports.formats import LLAMA_LAYOUT, llama_module_paths, model_module_paths, select_trial, to_mola
from reports.load import StudyError, load
from tiny_models import tiny_llama


def run(out_root, *args) -> int:
    return export.main(["--study", "tiny", "--out-root", str(out_root), *args])


def test_best_is_highest_accuracy_on_front_within_budget(tiny_study, out_root):
    data = load("tiny", out_root=out_root)
    assert select_trial(data, "best").number == 3  # accuracy 0.66
    budget = data.rows[3].value("trainable") - 1
    assert select_trial(data, "best", budget).number == 2  # only the uniform seed is smaller
    with pytest.raises(StudyError, match="at most 1,000 trainable params \\(smallest on the front: 29,696\\)"):
        select_trial(data, "best", 1000)
    with pytest.raises(StudyError, match="trial 5 is fail; export a completed trial"):
        select_trial(data, "5")
    with pytest.raises(StudyError, match="has no trial 42"):
        select_trial(data, "42")


def test_hilo_export_round_trips_bit_identically(tiny_study, out_root, trial_specs, capsys):
    out = out_root / "best.json"
    assert run(out_root, "--trial", "best", "--to", "hilo", "--out", str(out)) == 0
    assert "trial 3, accuracy 0.6600" in capsys.readouterr().out
    stored = tiny_study.trials[3].user_attrs["config"]
    again = MoLoRAConfig.from_json(out.read_text())
    assert again == trial_specs[3]["config"] and again.to_json() == stored


def test_peft_export_applies_to_the_base_model_with_summed_ranks(tiny_study, out_root, trial_specs):
    out = out_root / "peft8"
    assert run(out_root, "--trial", "8", "--to", "peft", "--out", str(out)) == 0
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["base_model_name_or_path"] == "tiny-llama"
    config = trial_specs[8]["config"]  # ranks (2, 8) | (4, 4, 4) | disabled | (6, 6)
    lora = LoraConfig.from_pretrained(str(out))
    model = get_peft_model(tiny_llama(config.n_layers), lora)
    for i, spec in enumerate(config.layers):
        for target in config.target_modules:
            module = model.base_model.model.get_submodule(f"model.layers.{i}.{LLAMA_LAYOUT[target]}.{target}")
            if spec.disabled:
                assert not hasattr(module, "lora_A"), f"layer {i} is disabled but got a LoRA"
                continue
            assert module.r["default"] == spec.total_rank == module.lora_A["default"].out_features
            assert module.scaling["default"] == pytest.approx(config.lora_alpha * spec.n_experts / spec.total_rank)
    # the projection keeps the trainable A/B parameter count of the experts (routers are not carried over)
    expected = sum(spec.total_rank * (module.in_features + module.out_features)
                   for i, spec in enumerate(config.layers) if not spec.disabled for target in config.target_modules
                   for module in [model.base_model.model.get_submodule(
                       f"model.layers.{i}.{LLAMA_LAYOUT[target]}.{target}").base_layer])
    assert model.get_nb_trainable_parameters()[0] == expected


def test_module_paths_read_from_a_model_match_the_llama_layout(trial_specs, tmp_path):
    config = trial_specs[3]["config"]
    tiny_llama(config.n_layers).config.save_pretrained(tmp_path / "base")
    assert sorted(model_module_paths(config, str(tmp_path / "base"))) == sorted(llama_module_paths(config))


def test_mola_export_matches_expert_counts(tiny_study, out_root, trial_specs):
    out = out_root / "mola.txt"
    assert run(out_root, "--trial", "1", "--to", "mola", "--out", str(out)) == 0
    lists = dict(line.split("=") for line in out.read_text().splitlines())
    config = trial_specs[1]["config"]
    assert [int(n) for n in lists["expert_number"].split(",")] == list(config.experts_per_layer) == [2, 4, 6, 8]
    assert lists["top_k"] == "2,2,2,2" and lists["lora_r"] == "2,4,6,8"
    assert to_mola(trial_specs[2]["config"]) == "expert_number=1,1,1,1\ntop_k=1,1,1,1\nlora_r=8,8,8,8\n"


def test_export_refusals_are_one_line(tiny_study, out_root, capsys):
    assert run(out_root, "--trial", "8", "--to", "mola") == 2  # threshold router, unequal ranks
    assert run(out_root, "--trial", "7", "--to", "hilo") == 2  # pruned
    assert run(out_root, "--trial", "best", "--max-trainable", "10", "--to", "peft") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("reports.export: ") for line in lines)
    assert "unequal expert ranks (2, 8)" in lines[0]
